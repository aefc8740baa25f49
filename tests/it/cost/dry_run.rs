//! dry run tests (to come)

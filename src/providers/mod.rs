//! The only code that speaks to LLM APIs (to be written).

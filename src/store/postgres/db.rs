//! The store's connection pool, made safe behind a transaction-mode pooler (PgBouncer).
//!
//! Behind such a pooler a client owns a server connection only for the length of a
//! transaction. sqlx names its prepared statements per client connection (`sqlx_s_1`, …) and
//! caches them, so two clients collide on one server connection, or find their statement gone
//! on the next. On a pooled URL every statement here is therefore sent unnamed
//! (`persistent(false)`), and one that runs outside a transaction is wrapped in one: sqlx parses
//! a statement in one round trip and binds it in the next, and only an open transaction keeps
//! the pooler from handing the second to another server connection.
//!
//! On a direct URL everything goes straight to sqlx's pool, as before. The store's queries are
//! written once against [`Db`] and [`Tx`]; they do not know which of the two they run on.

use std::ops::{Deref, DerefMut};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgQueryResult, PgRow, PgStatement};
use sqlx::postgres::{PgTypeInfo, Postgres};
use sqlx::{Either, Error, Execute, Executor, SqlStr};

/// The pool, and whether the server behind its URL is a transaction-mode pooler.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    pooled: bool,
}

impl Db {
    pub fn new(pool: PgPool, pooled: bool) -> Self {
        Db { pool, pooled }
    }

    /// sqlx's own pool: for the tests' administrative statements on a direct URL.
    pub fn inner(&self) -> &PgPool {
        &self.pool
    }

    /// The URL goes through a transaction-mode pooler.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    pub async fn begin(&self) -> Result<Tx, Error> {
        Ok(Tx(Conn {
            inner: Inner::Tx(self.pool.begin().await?),
            pooled: self.pooled,
        }))
    }

    /// One connection for several reads; a read-only transaction behind a pooler, where a
    /// bare connection would not stay one server connection from a statement to the next.
    pub async fn acquire(&self) -> Result<Conn, Error> {
        if self.pooled {
            return self.begin().await.map(|tx| tx.0);
        }
        Ok(Conn {
            inner: Inner::Plain(self.pool.acquire().await?),
            pooled: false,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A connection the store holds across statements.
#[derive(Debug)]
pub struct Conn {
    inner: Inner,
    pooled: bool,
}

#[derive(Debug)]
enum Inner {
    Tx(sqlx::Transaction<'static, Postgres>),
    Plain(PoolConnection<Postgres>),
}

impl Conn {
    fn connection(&mut self) -> &mut PgConnection {
        match &mut self.inner {
            Inner::Tx(tx) => tx,
            Inner::Plain(conn) => conn,
        }
    }
}

/// A transaction: statements through `&mut *tx` (or `&mut **tx` from a `&mut Tx`), then
/// [`Tx::commit`]; dropped without a commit, it rolls back.
#[derive(Debug)]
pub struct Tx(Conn);

impl Tx {
    pub async fn commit(self) -> Result<(), Error> {
        match self.0.inner {
            Inner::Tx(tx) => tx.commit().await,
            Inner::Plain(_) => Ok(()),
        }
    }

    pub async fn rollback(self) -> Result<(), Error> {
        match self.0.inner {
            Inner::Tx(tx) => tx.rollback().await,
            Inner::Plain(_) => Ok(()),
        }
    }
}

impl Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

/// A query sent as the unnamed statement: nothing named is left on the server connection.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(self) -> SqlStr {
        self.0.sql()
    }
    fn statement(&self) -> Option<&PgStatement> {
        self.0.statement()
    }
    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }
    fn persistent(&self) -> bool {
        false
    }
}

type Item = Either<PgQueryResult, PgRow>;

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Item, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return self.pool.fetch_many(query);
        }
        // The whole answer is read before the commit: the statement and its transaction end
        // together, and no caller here streams a large result.
        let pool = self.pool.clone();
        stream::once(async move {
            let mut tx = pool.begin().await?;
            let items: Vec<Item> = (&mut *tx).fetch_many(Unnamed(query)).try_collect().await?;
            tx.commit().await?;
            Ok::<_, Error>(stream::iter(items.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return self.pool.fetch_optional(query);
        }
        let rows = self.fetch_many(query).try_filter_map(|item| async move {
            Ok(match item {
                Either::Left(_) => None,
                Either::Right(row) => Some(row),
            })
        });
        Box::pin(async move { Box::pin(rows).try_next().await })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Item, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pooled = self.pooled;
        let conn = self.connection();
        if pooled {
            conn.fetch_many(Unnamed(query))
        } else {
            conn.fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pooled = self.pooled;
        let conn = self.connection();
        if pooled {
            conn.fetch_optional(Unnamed(query))
        } else {
            conn.fetch_optional(query)
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'c: 'e,
    {
        self.connection().prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        self.connection().describe(sql)
    }
}

//! TCP: the per-shard connection table (SYN handling, phases, accept queue) and the
//! application's handles (listener, streams).

pub(crate) mod accept_queue;
pub(crate) mod budget;
pub(crate) mod connection;
pub(crate) mod cookie;
pub(crate) mod listener;
pub(crate) mod pending;
pub(crate) mod request;
pub(crate) mod reset;
pub(crate) mod stream;
pub(crate) mod syncookies;
pub(crate) mod table;
pub(crate) mod tuple;

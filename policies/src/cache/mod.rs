//! Response caching (issue 12), the pure part: RFC 9111's storing and freshness rules
//! ([`rfc9111`]) and the cache key ([`key`]). Both exchanges and pingora-cache's hooks will ask
//! these, so there is one RFC 9111 implementation; the storage (bounded memory, TinyUFO), the
//! `cache:` configuration and the wiring come next and are not built yet.

pub mod key;
pub mod rfc9111;

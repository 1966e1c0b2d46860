//! Black-box tests of the API: a real server on a random port, a real sled data dir in a temp
//! folder, HTTP from the outside. One binary; one module per resource.

mod audit_log;
mod audit_retention;
mod auth;
mod cli;
mod device_pages;
mod devices;
mod durability;
mod errors;
mod events_stream;
mod events_stream_load;
mod events_tail;
mod failstop;
mod growth;
mod helpers;
mod host_secrets;
mod keys;
mod machine;
mod meta;
mod node_credential;
mod offline;
mod openapi;
mod pagination;
mod ratelimit;
mod ratelimit_clients;
mod ratelimit_machine;
mod ratelimit_tokens;
mod request_id;
mod slow_clients;
mod spoofing;
mod tenancy;
mod tenancy_walk;
mod tls;
mod token_lineage;
mod token_revocation;
mod tokens;

//! Black-box tests of the API: a real server on a random port, a real sled data dir in a temp
//! folder, HTTP from the outside. One binary; one module per resource.

mod helpers;
mod meta;
mod auth;
mod errors;
mod request_id;
mod ratelimit;
mod pagination;
mod tenancy;
mod durability;
mod tokens;
mod openapi;
mod cli;
mod keys;
mod devices;
mod machine;

//! poc-service integration tests: the real app on port 0 against a fresh database per test
//! (real Postgres, real HTTP).

mod accounts;
mod admin;
mod bad_input;
mod cell;
mod conformance;
mod fuzz;
mod helpers;
mod internal;
mod meili_contract;
mod openapi;
mod ops;
mod pocs;
mod refresh;
mod replicas;
mod search;
mod self_service;
mod signup;
mod throttle;

//! End-to-end tests of the `hanzo-node` binary: flags, exit codes and output shapes of
//! CONTRACTS §3, hostile fixtures, and receipts through `receipt verify`.

mod agent;
mod cache;
mod cli;
mod client;
mod hostile;
mod k8s;
mod logging;
mod logs_api;
mod mcp;
mod modules;
mod network;
mod new_cmd;
mod openapi;
mod policy;
mod process;
mod receipts;
mod serve;
mod server;
mod services_api;
mod shapes;
mod store_failures;
mod tools_api;
mod util;
mod verification;

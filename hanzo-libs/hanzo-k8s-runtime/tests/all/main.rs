//! Integration tests of the Kubernetes runtime: scripted-API scenarios (the real kube
//! client against a loopback fixture), manifest validation against the official
//! schemas, and the opt-in end-to-end test against a real cluster.

mod api;
mod e2e;
mod jobs;
mod manifests;
mod services;

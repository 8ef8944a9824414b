//! Black-box tests: the real `sluice` binary, as a user runs it.

mod agent;
mod batch;
mod client;
mod cluster;
mod cluster_checks;
mod cluster_harness;
mod compaction;
mod counts;
mod fault_proxy;
mod fluent;
mod fluent_clients;
mod forward;
mod harness;
mod ingest;
mod loopback;
mod newest_first;
mod partition;
mod query;
mod query_limits;
mod recovery;
mod spool;
mod store_blocks;
mod syslog;
mod syslog_clients;
mod telemetry;
mod udp_proxy;

//! `sluice forward --listen`: the local agent for fluent and syslog clients.


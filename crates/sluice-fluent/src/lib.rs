//! Fluentd forward protocol v1.

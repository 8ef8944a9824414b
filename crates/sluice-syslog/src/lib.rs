//! syslog over TCP.

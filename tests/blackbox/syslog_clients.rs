//! Real syslog daemons (rsyslog, syslog-ng) forwarding to the syslog listener.


//! `/metrics` follows Prometheus conventions: every metric has its help
//! text.

use crate::harness::*;

/// The metric families of a `/metrics` body without a `# HELP` line.
fn without_help(body: &str) -> Vec<String> {
    let typed = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next());
    typed
        .filter(|name| !body.contains(&format!("# HELP {name} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_of_a_node_has_help_text() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    send_and_wait_close(&node.fast, &numbered_lines(1000, "help"));
    node.wait_records(1000);
    assert_eq!(node.query(&["-q", "help"]).status.code(), Some(0));
    let (status, body) = http_get(&node.api, "/metrics").unwrap();
    assert_eq!(status, 200);
    let families = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert!(families > 20, "{families} metric families:\n{body}");
    assert_eq!(without_help(&body), Vec::<String>::new(), "{body}");
}

#[test]
fn every_metric_of_a_forwarder_has_help_text() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut forwarder = Forwarder::stdin(&[&format!("sluice://{}", node.batch)], &[]);
    let mut stdin = forwarder.take_stdin();
    std::io::Write::write_all(&mut stdin, &numbered_lines(1000, "help")).unwrap();
    wait_for("the forwarder's acks", || {
        (forwarder.metric("sluice_forward_records_acked_total") == 1000.0).then_some(())
    });
    let (status, body) = http_get(&forwarder.api, "/metrics").unwrap();
    assert_eq!(status, 200);
    let families = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert!(families >= 3, "{families} metric families:\n{body}");
    assert_eq!(without_help(&body), Vec::<String>::new(), "{body}");
    drop(stdin);
    assert!(forwarder.wait().status.success());
}

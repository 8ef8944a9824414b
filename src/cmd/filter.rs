//! The record filter flags that `sluice query` and `sluice stream` share.

// Which records: text in the payload (literal or regex, any case) and a
// topic. (No doc comment: with deferred subcommands, a flattened Args
// struct's doc would replace the subcommand's about in its --help.)
#[derive(clap::Args, Debug, Clone)]
pub struct Filter {
    /// Text to find in the payload. Empty matches every record.
    #[arg(short = 'q', long = "query", default_value = "")]
    pub query: String,
    /// Treat -q as a regular expression (Rust regex syntax).
    #[arg(long)]
    pub regex: bool,
    /// Ignore case.
    #[arg(short = 'i', long = "ignore-case")]
    pub ignore_case: bool,
    /// Only records of this topic.
    #[arg(long)]
    pub topic: Option<String>,
}

impl Filter {
    /// The filter as HTTP query parameters (`q`, `regex`, `i`, `topic`).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![("q", self.query.clone())];
        if self.regex {
            params.push(("regex", "true".into()));
        }
        if self.ignore_case {
            params.push(("i", "true".into()));
        }
        if let Some(topic) = &self.topic {
            params.push(("topic", topic.clone()));
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_set_becomes_a_parameter() {
        let plain = Filter {
            query: "ERROR".into(),
            regex: false,
            ignore_case: false,
            topic: None,
        };
        assert_eq!(plain.params(), vec![("q", "ERROR".to_string())]);
        let all = Filter {
            query: "e.r".into(),
            regex: true,
            ignore_case: true,
            topic: Some("app".into()),
        };
        assert_eq!(
            all.params(),
            vec![
                ("q", "e.r".to_string()),
                ("regex", "true".to_string()),
                ("i", "true".to_string()),
                ("topic", "app".to_string()),
            ]
        );
    }
}

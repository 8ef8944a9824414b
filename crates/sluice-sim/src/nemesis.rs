//! The nemesis: seeded faults while the writers write, each undone after
//! a while, and everything healed at the end of the fault phase.

use std::time::Duration;

use rand::Rng;

use crate::world::{Ev, World};

/// Nodes down at once at most: with more, RF 2 over 3 stores would mostly
/// stand still, which tests less.
const MAX_DOWN: usize = 2;

/// A fault that is undone later.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// Messages from `a` to `b` (and back, unless `one_way`) are lost.
    Partition { a: usize, b: usize, one_way: bool },
    /// Messages between `a` and `b` take `extra` longer.
    Slow { a: usize, b: usize, extra: Duration },
    /// `node`'s disk is full.
    DiskFull { node: usize },
}

impl World {
    /// One fault, chosen by the seed.
    pub(crate) fn nemesis(&mut self) {
        let nodes = self.status.len();
        let node = self.rng.random_range(0..nodes);
        let other = (node + self.rng.random_range(1..nodes)) % nodes;
        match self.rng.random_range(0..4u8) {
            0 => {
                let down = self.status.iter().filter(|s| !s.live).count();
                if !self.status[node].live || down >= MAX_DOWN {
                    return;
                }
                self.crash(node);
                let back = self.ms(200..3000);
                self.after(back, Ev::Restart { node });
            }
            1 => {
                let one_way = self.rng.random_bool(0.3);
                let fault = Fault::Partition {
                    a: node,
                    b: other,
                    one_way,
                };
                self.apply(fault);
                let until = self.ms(300..4000);
                self.after(until, Ev::Undo(fault));
            }
            2 => {
                let extra = self.ms(200..2500);
                let fault = Fault::Slow {
                    a: node,
                    b: other,
                    extra,
                };
                self.apply(fault);
                let until = self.ms(500..4000);
                self.after(until, Ev::Undo(fault));
            }
            _ => {
                if !self.status[node].live {
                    return;
                }
                let fault = Fault::DiskFull { node };
                self.apply(fault);
                let until = self.ms(300..3000);
                self.after(until, Ev::Undo(fault));
            }
        }
    }

    fn crash(&mut self, node: usize) {
        self.fold(&[10, node as u64]);
        let name = self.name(node);
        self.ledger
            .fault(format!("{:>8.3}s crash {name}", self.now.as_secs_f64()));
        self.note(format!("crash {name}"));
        if node < self.config.ingesters {
            self.crash_ingester(node);
        } else {
            self.crash_store(node - self.config.ingesters);
        }
    }

    pub(crate) fn restart(&mut self, node: usize) {
        self.fold(&[11, node as u64]);
        if node < self.config.ingesters {
            self.restart_ingester(node);
        } else {
            self.restart_store(node - self.config.ingesters);
        }
    }

    fn apply(&mut self, fault: Fault) {
        let line = match fault {
            Fault::Partition { a, b, one_way } => {
                self.net.cut(a, b);
                if !one_way {
                    self.net.cut(b, a);
                }
                let arrow = if one_way { "->" } else { "<->" };
                format!("partition {} {arrow} {}", self.name(a), self.name(b))
            }
            Fault::Slow { a, b, extra } => {
                self.net.slow(a, b, extra);
                self.net.slow(b, a, extra);
                format!("slow {} <-> {} by {extra:?}", self.name(a), self.name(b))
            }
            Fault::DiskFull { node } => {
                self.fill(node);
                format!("disk full {}", self.name(node))
            }
        };
        self.fold(&[12, line.len() as u64]);
        self.ledger
            .fault(format!("{:>8.3}s {line}", self.now.as_secs_f64()));
        self.note(line);
    }

    pub(crate) fn undo(&mut self, fault: Fault) {
        match fault {
            Fault::Partition { a, b, one_way } => {
                self.net.mend(a, b);
                if !one_way {
                    self.net.mend(b, a);
                }
            }
            Fault::Slow { a, b, extra } => {
                self.net.unslow(a, b, extra);
                self.net.unslow(b, a, extra);
            }
            Fault::DiskFull { node } => self.unfill(node),
        }
    }

    fn fill(&mut self, node: usize) {
        if node < self.config.ingesters {
            let fs = &self.ingesters[node].fs;
            fs.set_capacity(Some(fs.used_bytes()));
        } else {
            self.fill_store(node - self.config.ingesters);
        }
    }

    fn unfill(&mut self, node: usize) {
        if node < self.config.ingesters {
            self.ingesters[node].fs.set_capacity(None);
        } else {
            self.unfill_store(node - self.config.ingesters);
        }
    }

    /// End of the fault phase: writers stop, every link and disk is
    /// healed, and every node that is down restarts.
    pub(crate) fn heal_all(&mut self) {
        self.faulting = false;
        self.net.heal();
        for node in 0..self.status.len() {
            self.unfill(node);
            if !self.status[node].live {
                self.restart(node);
            }
        }
        self.ledger
            .fault(format!("{:>8.3}s heal everything", self.now.as_secs_f64()));
        self.note("heal everything; writers stop".to_string());
    }
}

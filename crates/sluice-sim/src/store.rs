//! A simulated store: the real [`Store`] on its own [`MemFs`], with its
//! lanes as [`Lane`] state machines. The lanes' actions become messages,
//! or local file work done with the consumer's own functions
//! (`verify_and_sort`, `store_inputs`) and the real replica receiver.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rand::{SeedableRng, rngs::SmallRng};
use sluice_record::Ulid;
use sluice_storage::{Fs, MemFs, StorageError, WorkerPool, store_segment::TMP_DIR};
use sluice_store::{
    Store,
    consumer::files::{Downloaded, store_inputs, verify_and_sort},
    lane::{self, Action, Event, Lane, LaneConfig},
    replica,
};

use crate::world::{Ev, Msg, World};

/// The store directory on each store's file system.
pub(crate) const DIR: &str = "/store";

struct LaneSlot {
    lane: Lane,
    /// The wake-up the world has queued for it, if any.
    scheduled: Option<Duration>,
    rng: SmallRng,
}

pub(crate) struct StoreNode {
    pub(crate) fs: MemFs,
    /// `None` while the node is down.
    pub(crate) store: Option<Store>,
    /// Grows at every start and crash: replies to an earlier life are
    /// dropped.
    pub(crate) life: u64,
    lanes: Vec<LaneSlot>,
    /// Verified downloads, by lane and ingest segment.
    downloads: BTreeMap<(usize, Ulid), Downloaded>,
    /// `--max-disk` while the nemesis fills the disk.
    pub(crate) max_disk: Option<u64>,
}

impl StoreNode {
    pub(crate) fn new() -> StoreNode {
        StoreNode {
            fs: MemFs::new(),
            store: None,
            life: 0,
            lanes: Vec::new(),
            downloads: BTreeMap::new(),
            max_disk: None,
        }
    }
}

impl World {
    /// Open store `s` (its recovery removes unfinished `tmp/` files) and
    /// start its lanes; a failure (a full disk) is retried.
    pub(crate) fn start_store(&mut self, s: usize) {
        let node = &mut self.stores[s];
        if node.store.is_some() {
            return;
        }
        let opened = Store::open(
            Arc::new(node.fs.clone()),
            Path::new(DIR),
            WorkerPool::inline(),
        );
        let me = self.store_node(s);
        let store = match opened {
            Ok(store) => store,
            Err(err) => {
                self.note(format!("s{s}: restart failed, retried: {err}"));
                self.after(Duration::from_millis(500), Ev::Restart { node: me });
                return;
            }
        };
        let node = &mut self.stores[s];
        store.set_max_disk(node.max_disk);
        node.store = Some(store);
        node.life += 1;
        let life = node.life;
        let config = LaneConfig {
            self_id: format!("s{s}"),
            rf: self.config.lane_rf.unwrap_or(self.config.rf),
            max_gather_segments: self.config.max_gather_segments,
            request_timeout: self.config.request_timeout,
            replica_timeout: self.config.replica_timeout,
            idle_pause: Duration::from_millis(100),
            retry_backoff: Duration::from_millis(200),
        };
        let now = self.instant();
        let seed = self.seed;
        self.stores[s].lanes = (0..self.config.lanes_per_store)
            .map(|l| LaneSlot {
                lane: Lane::new(config.clone(), now),
                scheduled: None,
                rng: SmallRng::seed_from_u64(
                    seed ^ ((s as u64) << 48) ^ ((l as u64) << 40) ^ (life << 20),
                ),
            })
            .collect();
        for l in 0..self.config.lanes_per_store {
            self.reschedule(s, l);
        }
    }

    pub(crate) fn crash_store(&mut self, s: usize) {
        let torn = rand::Rng::random(&mut self.rng);
        let node = &mut self.stores[s];
        node.store = None;
        node.life += 1;
        node.lanes.clear();
        node.downloads.clear();
        node.fs.crash(Some(torn));
        let me = self.store_node(s);
        self.set_status(me, false, false);
    }

    pub(crate) fn restart_store(&mut self, s: usize) {
        if self.stores[s].store.is_some() {
            return;
        }
        self.start_store(s);
        if self.stores[s].store.is_some() {
            let me = self.store_node(s);
            let readonly = self.stores[s].max_disk.is_some();
            self.set_status(me, true, readonly);
            self.relearn(me);
            self.note(format!("restart s{s}"));
        }
    }

    /// Queue a wake-up for lane `l` when it asks for an earlier one than
    /// the one queued.
    fn reschedule(&mut self, s: usize, l: usize) {
        let life = self.stores[s].life;
        let (base, now) = (self.base, self.now);
        let Some(slot) = self.stores[s].lanes.get_mut(l) else {
            return;
        };
        let Some(at) = slot.lane.wake_at() else {
            return;
        };
        let at = at.saturating_duration_since(base).max(now);
        if slot.scheduled.is_some_and(|queued| queued <= at) {
            return;
        }
        slot.scheduled = Some(at);
        self.schedule(
            at,
            Ev::LaneWake {
                store: s,
                lane: l,
                life,
            },
        );
    }

    pub(crate) fn lane_woken(&mut self, s: usize, l: usize, life: u64) {
        if self.stores[s].life != life {
            return;
        }
        let now = self.now;
        let Some(slot) = self.stores[s].lanes.get_mut(l) else {
            return;
        };
        if slot.scheduled != Some(now) {
            return;
        }
        slot.scheduled = None;
        self.step(s, l, Event::Wake);
    }

    pub(crate) fn lane_event(&mut self, s: usize, l: usize, life: u64, event: Event) {
        if self.stores[s].life == life && self.stores[s].store.is_some() {
            self.step(s, l, event);
        }
    }

    /// Feed `event` to lane `l` and carry out what it asks.
    fn step(&mut self, s: usize, l: usize, event: Event) {
        let view = self.view_of(s);
        let now = self.instant();
        let Some(slot) = self.stores[s].lanes.get_mut(l) else {
            return;
        };
        let actions = slot.lane.step(now, event, &view, &mut slot.rng);
        for action in actions {
            self.act(s, l, action);
        }
        self.reschedule(s, l);
    }

    fn act(&mut self, s: usize, l: usize, action: Action) {
        let me = self.store_node(s);
        let life = self.stores[s].life;
        match action {
            Action::Next { token, ingester } => {
                if let Some(to) = self.node_named(&ingester) {
                    let msg = Msg::Next {
                        lane: l,
                        life,
                        token,
                    };
                    self.send(me, to, msg);
                }
            }
            Action::Download {
                token,
                ingester,
                id,
            } => {
                if let Some(to) = self.node_named(&ingester) {
                    let msg = Msg::Read {
                        lane: l,
                        life,
                        token,
                        id,
                    };
                    self.send(me, to, msg);
                }
            }
            Action::Write { token, inputs } => {
                let result = self.write_local(s, l, &inputs);
                if let Ok(written) = &result {
                    let names: Vec<&str> = written.iter().map(|w| w.name.as_str()).collect();
                    self.note(format!("s{s}: wrote {}", names.join(" ")));
                }
                let event = Event::Write { token, result };
                self.local(s, l, event);
            }
            Action::Replicate {
                token,
                segment,
                target,
            } => {
                let read = read_file(&self.stores[s].fs, &Path::new(DIR).join(&segment));
                match (read, self.node_named(&target.id)) {
                    (Ok(bytes), Some(to)) => {
                        let msg = Msg::Replicate {
                            lane: l,
                            life,
                            token,
                            name: segment,
                            bytes: Arc::new(bytes),
                        };
                        self.send(me, to, msg);
                    }
                    (read, _) => {
                        let why = read.err().unwrap_or_else(|| "no such store".to_string());
                        let event = Event::Replica {
                            token,
                            result: Err(why),
                        };
                        self.local(s, l, event);
                    }
                }
            }
            Action::Commit {
                token,
                ingester,
                id,
                replicas,
            } => {
                if let Some(to) = self.node_named(&ingester) {
                    let msg = Msg::Commit {
                        lane: l,
                        life,
                        token,
                        id,
                        replicas,
                    };
                    self.send(me, to, msg);
                }
            }
            Action::GiveBack { ingester, id } => {
                if let Some(to) = self.node_named(&ingester) {
                    self.send(me, to, Msg::Failed { id });
                }
            }
            Action::Release { inputs } => {
                let node = &mut self.stores[s];
                for id in inputs {
                    if let Some(download) = node.downloads.remove(&(l, id)) {
                        let _ = node.fs.remove_file(&download.path);
                    }
                }
            }
        }
    }

    /// A local step's result, handed to the lane at once (as a queued
    /// event, so a lane's step never runs inside another).
    fn local(&mut self, s: usize, l: usize, event: Event) {
        let life = self.stores[s].life;
        let ev = Ev::LaneEvent {
            store: s,
            lane: l,
            life,
            event,
        };
        self.after(Duration::ZERO, ev);
    }

    /// Write the lane's downloads as durable store segments: the
    /// consumer's own `store_inputs` (adopt, or merge when they overlap).
    fn write_local(
        &mut self,
        s: usize,
        l: usize,
        inputs: &[Ulid],
    ) -> Result<Vec<lane::Written>, String> {
        let node = &self.stores[s];
        let mut downloads = Vec::with_capacity(inputs.len());
        for id in inputs {
            let download = node
                .downloads
                .get(&(l, *id))
                .ok_or_else(|| format!("download of {id} is missing"))?;
            downloads.push(download.clone());
        }
        let written =
            store_inputs(&node.fs, Path::new(DIR), downloads).map_err(|e| e.to_string())?;
        Ok(written
            .into_iter()
            .map(|w| lane::Written {
                name: w.name,
                inputs: w.inputs,
            })
            .collect())
    }

    pub(crate) fn store_receives(&mut self, s: usize, from: usize, msg: Msg) {
        let me = self.store_node(s);
        let Some(store) = self.stores[s].store.clone() else {
            return;
        };
        match msg {
            Msg::ReadReply {
                lane,
                life,
                token,
                id,
                result,
            } => {
                if life != self.stores[s].life {
                    return;
                }
                let result = result.and_then(|bytes| self.download(s, lane, id, &bytes));
                self.step(s, lane, Event::Download { token, result });
            }
            Msg::Replicate {
                lane,
                life,
                token,
                name,
                bytes,
            } => {
                let identity = replica::Identity::of(&bytes);
                let received = replica::receive(&store, &name, Some(identity), bytes.as_slice());
                if let Ok(how) = received {
                    self.note(format!("s{s}: replica {name} {}", how.as_str()));
                }
                let result = received.map(|_| ()).map_err(|e| e.to_string());
                let event = Event::Replica { token, result };
                self.send(me, from, Msg::Reply { lane, life, event });
            }
            Msg::Reply { lane, life, event } => {
                if life == self.stores[s].life {
                    self.step(s, lane, event);
                }
            }
            Msg::Next { .. } | Msg::Read { .. } | Msg::Commit { .. } | Msg::Failed { .. } => {}
        }
    }

    /// Put a downloaded segment in `tmp/` and verify it, as the
    /// consumer's download does.
    fn download(&mut self, s: usize, l: usize, id: Ulid, bytes: &[u8]) -> Result<(), String> {
        let node = &mut self.stores[s];
        let path: PathBuf = Path::new(DIR)
            .join(TMP_DIR)
            .join(format!("{id}.ingest.tmp"));
        let fs = &node.fs;
        let _ = fs.remove_file(&path);
        let written = fs
            .create_new(&path)
            .and_then(|mut file| file.write_all(bytes));
        written.map_err(|e| StorageError::io("write download", &path)(e).to_string())?;
        let (min, max, records) = verify_and_sort(fs, &path).map_err(|e| e.to_string())?;
        node.downloads.insert(
            (l, id),
            Downloaded {
                id,
                path,
                min,
                max,
                records,
            },
        );
        Ok(())
    }

    /// Fill store `s`'s disk: writes fail, and it is over `--max-disk`,
    /// so it publishes `readonly` and refuses replicas (507).
    pub(crate) fn fill_store(&mut self, s: usize) {
        let node = &mut self.stores[s];
        let Some(store) = &node.store else { return };
        let held = store.disk_bytes().unwrap_or(0);
        node.max_disk = Some(held.saturating_sub(1));
        store.set_max_disk(node.max_disk);
        node.fs.set_capacity(Some(node.fs.used_bytes()));
        let me = self.store_node(s);
        self.set_status(me, true, true);
    }

    pub(crate) fn unfill_store(&mut self, s: usize) {
        let node = &mut self.stores[s];
        node.fs.set_capacity(None);
        if node.max_disk.take().is_none() {
            return;
        }
        if let Some(store) = &node.store {
            store.set_max_disk(None);
            let me = self.store_node(s);
            self.set_status(me, true, false);
        }
    }
}

fn read_file(fs: &MemFs, path: &Path) -> Result<Vec<u8>, String> {
    let file = fs
        .open_read(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let len = file.len().map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

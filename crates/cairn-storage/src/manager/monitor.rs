//! Watching without being asked: wakes on md events, fails out disks that vanished (as udev would), closes
//! finished jobs, logs each volume's state changes and starts scrubs when due. The pages never wait on it:
//! they read the kernel themselves.

use super::kernel::MdLive;
use super::{now_s, Storage, SCRUB_EVERY_S};
use crate::volumes::{Level, VolumeRecord};
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

impl Storage {
    /// The monitor, forever: a pass ([`Storage::tick`]) whenever the kernel reports an md event (a disk
    /// failed or was added, a sync started or ended: /proc/mdstat polls with POLLPRI, as `mdadm --monitor`
    /// uses it) and at least every `at_most`. Progress alone wakes nothing, so a rebuild costs nothing to
    /// watch; the pages read the kernel live, so nothing waits on this loop to show a failure.
    pub fn run_monitor(&self, at_most: Duration) -> ! {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let ms = u16::try_from(at_most.as_millis()).unwrap_or(u16::MAX);
        let mut mdstat: Option<std::fs::File> = None;
        loop {
            if mdstat.is_none() {
                // md_mod is loaded on demand: /proc/mdstat appears with the first volume.
                mdstat = std::fs::File::open(self.inner.paths.proc.join("mdstat")).ok();
            }
            // Read before the pass: an event during the pass then wakes the poll at once.
            if let Some(f) = mdstat.as_mut() {
                let mut sink = String::new();
                let _ = f
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| f.read_to_string(&mut sink));
            }
            self.tick();
            match &mdstat {
                Some(f) => {
                    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                None => std::thread::sleep(at_most),
            }
        }
    }

    /// One pass of the monitor: vanished disks failed out, state changes logged, finished jobs closed,
    /// scrubs started when due. Cheap (sysfs reads); run every second.
    pub fn tick(&self) {
        let Ok(records) = self.records() else { return };
        // Which disks are present and what is mounted: read once for every volume of this pass.
        let Ok(s) = self.survey_light() else { return };
        for mut r in records {
            let live = self.live_of(&r);
            if let Some(l) = &live {
                if l.members
                    .iter()
                    .any(|(_, st, e)| !e && !st.contains("faulty"))
                {
                    let _g = self.guard();
                    self.kick_vanished(&r, l);
                }
            }
            self.finish_jobs(&r.name);
            // Settling a scrub updated the record: read it again.
            if let Ok(Some(fresh)) = self.inner.volumes.get::<VolumeRecord>(&r.name) {
                r = fresh;
            }
            let view = self.volume_view(&r, &s);
            let changed = view.state != r.last_state;
            if changed {
                let level = match view.state {
                    "clean" | "creating" | "rebuilding" => "info",
                    "degraded" => "warning",
                    _ => "error",
                };
                let msg = match &view.problem {
                    Some(p) => format!("Volume {} is {}: {p}", r.name, view.state),
                    None => format!("Volume {} is {}.", r.name, view.state),
                };
                self.event(level, &r.name, &msg, "");
                r.last_state = view.state.to_string();
            }
            if view.state == "clean" && view.job.is_none() && r.level != Level::Raid0 {
                let since = r.last_scrub_s.unwrap_or(r.created_s);
                if now_s().saturating_sub(since) > SCRUB_EVERY_S {
                    if let Err(e) = self.scrub(&r.name) {
                        log::warn!("scheduled scrub of {}: {e}", r.name);
                    }
                    continue;
                }
            }
            // Only the one field the monitor owns, on the record as it is now and under the lock: a request's
            // change (a member swapped, a replace under way) made since the pass began is kept.
            if changed {
                let observed = r.last_state.clone();
                let kept = self.update_record(&r.name, |current| current.last_state = observed);
                if let Err(e) = kept {
                    log::error!("storage: recording volume {}'s state: {e}", r.name);
                }
            }
        }
    }

    /// A member whose disk vanished (pulled, dead controller) is failed out at once, as udev would do.
    pub(super) fn kick_vanished(&self, r: &VolumeRecord, live: &MdLive) {
        for (dev, state, exists) in &live.members {
            if !exists && !state.contains("faulty") {
                let _ = self
                    .inner
                    .tools
                    .fail_detached(&self.md_dev(r.md_minor), dev);
                let who = r
                    .disks
                    .iter()
                    .find(|m| self.device_of(&m.id).is_none())
                    .map(|m| m.describe())
                    .unwrap_or_else(|| format!("disk {dev}"));
                self.event(
                    "warning",
                    &r.name,
                    &format!(
                        "{who} was removed from the box while part of volume {}.",
                        r.name
                    ),
                    "",
                );
            }
        }
    }
}

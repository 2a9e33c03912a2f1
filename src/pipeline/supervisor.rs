//! Restart policy: capped exponential backoff per component and one restart
//! budget for the whole pipeline.
//!
//! actix's own `Supervisor` does not restart an actor whose handler panicked
//! (the actor just disappears), so the engine supervises: the runner catches
//! the panic, asks here how long to wait, and rebuilds the component from its
//! config. Like an Erlang supervisor's intensity, more than `budget` restarts
//! within `window` across the pipeline mean something is persistently wrong:
//! the pipeline is stopped and the process exits non-zero, so systemd or
//! Kubernetes restart it from a clean state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Settings;

pub struct Supervisor {
    budget: usize,
    window: Duration,
    initial: Duration,
    max: Duration,
    /// (when, component id) of recent restarts.
    recent: Mutex<VecDeque<(Instant, String)>>,
    failed: AtomicBool,
    reason: Mutex<Option<String>>,
    /// Cancelled to stop the pipeline's sources.
    stop: CancellationToken,
    events: Option<super::component::EngineEvents>,
}

impl Supervisor {
    pub fn new(settings: &Settings, stop: CancellationToken) -> Self {
        Supervisor {
            budget: settings.restart_budget as usize,
            window: settings.restart_window(),
            initial: Duration::from_millis(settings.restart_backoff_initial_ms),
            max: Duration::from_millis(settings.restart_backoff_max_ms),
            recent: Mutex::new(VecDeque::new()),
            failed: AtomicBool::new(false),
            reason: Mutex::new(None),
            stop,
            events: None,
        }
    }

    /// Announces restarts as COMPONENT_RESTARTED events.
    pub fn with_events(mut self, events: super::component::EngineEvents) -> Self {
        self.events = Some(events);
        self
    }

    /// Records a restart of `id`. Returns how long to wait before rebuilding
    /// it, or `None` when the budget is spent: the pipeline is then stopping
    /// and the component must not be rebuilt.
    pub fn on_restart(&self, id: &str, why: &str) -> Option<Duration> {
        if self.failed.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            recent.pop_front();
        }
        recent.push_back((now, id.to_string()));
        if let Some(ev) = &self.events {
            let mut a = crate::pipeline::message::Alert::event(
                "COMPONENT_RESTARTED",
                crate::pipeline::message::Severity::Warning,
                None,
                format!("component \"{id}\" restarted: {why}"),
                chrono::Utc::now(),
            );
            a.key = Some(id.to_string());
            a.details = serde_json::json!({"component": id, "reason": why,
                "restarts_in_window": recent.len(), "budget": self.budget});
            ev.publish(a);
        }
        if recent.len() > self.budget {
            let reason = format!(
                "restart budget exhausted: {} restarts within {:?} (last: component \"{id}\" {why})",
                recent.len(),
                self.window
            );
            drop(recent);
            self.fail(reason);
            return None;
        }
        let attempts = recent.iter().filter(|(_, c)| c == id).count() as u32;
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        Some(self.initial.saturating_mul(factor).min(self.max))
    }

    /// Marks the pipeline failed and stops it.
    pub fn fail(&self, reason: String) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(%reason, "stopping the pipeline");
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        }
        self.stop.cancel();
    }

    pub fn failure(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(budget: u32) -> Settings {
        Settings {
            restart_budget: budget,
            restart_backoff_initial_ms: 100,
            restart_backoff_max_ms: 1000,
            ..Settings::default()
        }
    }

    #[test]
    fn backoff_doubles_per_component_and_is_capped() {
        let s = Supervisor::new(&settings(100), CancellationToken::new());
        let d: Vec<_> = (0..6).map(|_| s.on_restart("a", "x").unwrap()).collect();
        assert_eq!(d[0], Duration::from_millis(100));
        assert_eq!(d[1], Duration::from_millis(200));
        assert_eq!(d[3], Duration::from_millis(800));
        assert_eq!(d[5], Duration::from_millis(1000));
        assert_eq!(s.on_restart("b", "x").unwrap(), Duration::from_millis(100));
    }

    #[test]
    fn exceeding_the_budget_fails_and_stops_the_pipeline() {
        let stop = CancellationToken::new();
        let s = Supervisor::new(&settings(2), stop.clone());
        assert!(s.on_restart("a", "x").is_some());
        assert!(s.on_restart("b", "x").is_some());
        assert!(!stop.is_cancelled());
        assert!(s.on_restart("a", "panicked").is_none());
        assert!(stop.is_cancelled());
        assert!(s.failure().unwrap().contains("restart budget"));
        assert!(s.on_restart("c", "x").is_none(), "no rebuild once failed");
    }
}

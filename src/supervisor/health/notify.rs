//! systemd readiness notifications (`Type=notify` units): nothing happens without
//! `NOTIFY_SOCKET`, or in a build without the `health` feature.

/// Tells systemd (when `NOTIFY_SOCKET` is set) that the service is ready.
pub fn notify_ready() {
    send(Notice::Ready);
}

/// Tells systemd (when `NOTIFY_SOCKET` is set) that the service is stopping.
pub fn notify_stopping() {
    send(Notice::Stopping);
}

enum Notice {
    Ready,
    Stopping,
}

fn send(notice: Notice) {
    #[cfg(feature = "health")]
    {
        let state = match notice {
            Notice::Ready => sd_notify::NotifyState::Ready,
            Notice::Stopping => sd_notify::NotifyState::Stopping,
        };
        let _ = sd_notify::notify(&[state]);
    }
    #[cfg(not(feature = "health"))]
    let _ = notice;
}

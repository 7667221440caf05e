//! Local HTTP fakes: an axum app served on a free loopback port.

/// Serves `app` on a free loopback port on its own thread and runtime, so
/// it answers while the test blocks (e.g. waiting for Sluice to start,
/// which may call it). Returns its `http://127.0.0.1:port` URL and the
/// sender that stops it.
pub fn serve_on_own_thread(app: axum::Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
    });
    (url, shutdown)
}

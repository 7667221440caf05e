//! Local fakes of HTTP (and gRPC) services on free loopback ports.

use std::future::Future;

use tokio::sync::oneshot;

/// Runs `serve` (given the bound listener and the signal to stop) on a
/// free loopback port on its own thread and runtime, so that it answers
/// while the test blocks (e.g. waiting for Sluice to start, which may call
/// it). Returns its `http://127.0.0.1:port` URL and the sender that stops it.
pub fn serve_on_own_thread<F, Fut>(serve: F) -> (String, oneshot::Sender<()>)
where
    F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, stop).await;
        });
    });
    (url, shutdown)
}

/// [`serve_on_own_thread`] for an axum app.
pub fn serve_axum(app: axum::Router) -> (String, oneshot::Sender<()>) {
    serve_on_own_thread(|listener, stop| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
            .unwrap();
    })
}

//! The executor matrix: one prelude module per flavour of the stack, with the same names in
//! each, so that one test body compiles against all four.
//!
//! | module | stack types | executor | test body and tasks |
//! |---|---|---|---|
//! | [`tokio_multi_thread`] | `netstack_tokio` (`Send`) | tokio, 2 workers | `tokio::spawn` |
//! | [`tokio_local`] | `netstack_tokio::local` | tokio current-thread + `LocalSet` | `spawn_local` |
//! | [`smol_send`] | `netstack_smol` (`Send`) | `async_executor::Executor` on 2 threads | `Executor::spawn` |
//! | [`smol_local`] | `netstack_smol::local` | `async_executor::LocalExecutor` | `LocalExecutor::spawn` |
//!
//! Each module exports `run` (enter a fresh namespace, create the TUN device and the executor,
//! run the body), `spawn` (a task on the flavour's executor, awaitable, detached when dropped),
//! `timeout`, `sleep`, `Fixture` (a stack wired to the device), `spawn_echo_server`,
//! `wait_for`, the flavour's `StackBuilder` and the I/O extension traits of its streams.
//! `tests/tests/matrix.rs` instantiates every body once per module with a macro: as the body
//! is type-checked per flavour, `spawn` needs `Send` futures exactly where the flavour does.
//!
//! The kernel peer is a tokio socket in every flavour (the smol flavours start a one-worker
//! tokio runtime for it, in the namespace); the stack's I/O, timers and tasks are the flavour's
//! own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// A task's output, or its panic re-raised in the awaiting task.
fn unwrap_join<T>(r: Result<T, tokio::task::JoinError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("task failed: {e}"),
        },
    }
}

/// A spawned tokio task: awaiting it gives its output (re-raising its panic); dropping it
/// detaches it.
#[derive(Debug)]
pub struct TokioTask<T>(tokio::task::JoinHandle<T>);

impl<T> Future for TokioTask<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx).map(unwrap_join)
    }
}

/// A spawned async-executor task: awaiting it gives its output; dropping it detaches it (an
/// `async_task::Task` would cancel), as a tokio task does.
#[derive(Debug)]
pub struct SmolTask<T>(Option<async_executor::Task<T>>);

impl<T> Future for SmolTask<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.0.as_mut() {
            Some(task) => Pin::new(task).poll(cx),
            None => panic!("SmolTask polled after completion"),
        }
    }
}

impl<T> Drop for SmolTask<T> {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.detach();
        }
    }
}

/// A runner future that counts its polls (to prove an idle stack is not woken).
#[derive(Debug)]
pub struct CountingRunner<R> {
    runner: R,
    polls: Arc<AtomicU64>,
}

impl<R> CountingRunner<R> {
    /// Wraps `runner`; every poll increments `polls`.
    pub fn new(runner: R, polls: Arc<AtomicU64>) -> Self {
        CountingRunner { runner, polls }
    }
}

impl<R: Future + Unpin> Future for CountingRunner<R> {
    type Output = R::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.runner).poll(cx)
    }
}

/// `timeout` and `sleep` on async-io's timers, for the smol flavours.
pub mod async_io_time {
    use std::future::Future;
    use std::time::Duration;

    use futures::future::{select, Either};

    /// The error of [`timeout`]: the limit passed first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Elapsed;

    /// Runs `fut` for at most `limit`.
    ///
    /// # Errors
    /// [`Elapsed`] if `limit` passed first.
    pub async fn timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
        match select(Box::pin(fut), async_io::Timer::after(limit)).await {
            Either::Left((v, _)) => Ok(v),
            Either::Right(_) => Err(Elapsed),
        }
    }

    /// Sleeps for `d`.
    pub async fn sleep(d: Duration) {
        async_io::Timer::after(d).await;
    }
}

/// `shutdown()` for futures-io writers: the smol streams' half-close is `poll_close`, named
/// like tokio's so that test bodies read the same for every flavour.
pub trait ShutdownExt: futures::AsyncWrite + Unpin {
    /// Half-closes the stream (queues a FIN); see `netstack_smol::TcpStream`.
    fn shutdown(&mut self) -> futures::io::Close<'_, Self> {
        futures::AsyncWriteExt::close(self)
    }
}

impl<W: futures::AsyncWrite + Unpin + ?Sized> ShutdownExt for W {}

/// The items every flavour module defines the same way over its own `spawn`, `sleep`,
/// `StackBuilder`, `Stack`, `TcpListener` and `TunHandle`.
macro_rules! common {
    () => {
        /// A running stack wired to the TUN device.
        pub struct Fixture {
            /// The packet side (clone it to inject packets or read counters).
            pub stack: PacketPort,
            /// Accepts the stack's connections.
            pub listener: TcpListener,
            /// How many times the runner future has been polled.
            pub runner_polls: std::sync::Arc<std::sync::atomic::AtomicU64>,
        }

        impl Fixture {
            /// Builds a stack from `builder`, spawns its runner and the two packet pumps.
            pub fn start(tun: TunHandle, builder: StackBuilder) -> Fixture {
                use futures::{SinkExt, StreamExt};
                let (stack, runner, listener) = builder.build();
                let runner_polls = std::sync::Arc::default();
                drop(spawn($crate::flavors::CountingRunner::new(
                    runner,
                    std::sync::Arc::clone(&runner_polls),
                )));
                let (mut sink, mut stream) = stack.clone().split();
                let reader = tun.clone();
                drop(spawn(async move {
                    let mut buf = vec![0u8; reader.mtu() as usize + 64];
                    while let Ok(n) = reader.recv(&mut buf).await {
                        if sink.send(buf[..n].to_vec()).await.is_err() {
                            return;
                        }
                    }
                }));
                drop(spawn(async move {
                    while let Some(packet) = stream.next().await {
                        // The kernel refuses some packets (to addresses it cannot route).
                        let _ = tun.send(&packet).await;
                    }
                }));
                Fixture {
                    stack,
                    listener,
                    runner_polls,
                }
            }
        }

        /// Spawns an echo server on `listener`: every connection gets its bytes back, and a
        /// FIN once the peer's FIN arrived.
        pub fn spawn_echo_server(listener: TcpListener) {
            drop(spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    drop(spawn(async move {
                        let (mut r, mut w) = stream.into_split();
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if w.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        let _ = w.shutdown().await;
                    }));
                }
            }));
        }

        /// Waits (up to `limit`) until `cond` holds for the stack's counters; returns the
        /// last snapshot.
        pub async fn wait_for(
            stack: &PacketPort,
            limit: std::time::Duration,
            cond: impl Fn(&Stats) -> bool,
        ) -> Stats {
            let deadline = std::time::Instant::now() + limit;
            loop {
                let s = stack.stats();
                if cond(&s) || std::time::Instant::now() >= deadline {
                    return s;
                }
                sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
}

/// The `Send` tokio flavour on a multi-thread runtime with two workers.
pub mod tokio_multi_thread {
    use std::future::Future;
    use std::sync::Arc;

    pub use netstack_tokio::{PacketPort, StackBuilder, Stats, TcpListener};
    pub use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    pub use tokio::time::{sleep, timeout};

    use super::TokioTask;
    use crate::{TestNet, Tun};

    /// The TUN device as the flavour's packet pumps hold it.
    pub type TunHandle = Arc<Tun>;

    /// Runs `body` in a fresh namespace on a two-worker runtime.
    pub fn run<F, Fut>(net: TestNet, body: F)
    where
        F: FnOnce(TunHandle) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        crate::run_in_netns(net, 2, body);
    }

    /// Spawns `fut` on the runtime.
    pub fn spawn<F>(fut: F) -> TokioTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        TokioTask(tokio::spawn(fut))
    }

    common!();
}

/// The non-`Send` tokio flavour on a current-thread runtime with a `LocalSet`.
pub mod tokio_local {
    use std::future::Future;
    use std::sync::Arc;

    pub use netstack_tokio::local::{PacketPort, StackBuilder, TcpListener};
    pub use netstack_tokio::Stats;
    pub use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    pub use tokio::time::{sleep, timeout};

    use super::TokioTask;
    use crate::{TestNet, Tun};

    /// The TUN device as the flavour's packet pumps hold it.
    pub type TunHandle = Arc<Tun>;

    /// Runs `body` in a fresh namespace inside a `LocalSet` on a current-thread runtime.
    pub fn run<F, Fut>(net: TestNet, body: F)
    where
        F: FnOnce(TunHandle) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        crate::run_in_netns_current_thread(net, |tun| async move {
            tokio::task::LocalSet::new().run_until(body(tun)).await;
        });
    }

    /// Spawns `fut` on the `LocalSet`.
    pub fn spawn<F>(fut: F) -> TokioTask<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        TokioTask(tokio::task::spawn_local(fut))
    }

    common!();
}

/// A tokio runtime for the kernel-side sockets of the smol flavours, and the setup they share.
mod smol_setup {
    use std::sync::Arc;
    use std::time::Duration;

    use netstack_examples::tun_async_io::AsyncIoTun;

    use crate::TestNet;

    /// Creates the kernel peer's runtime (one worker, in the namespace: call it from the
    /// namespace's thread) and the TUN device, configured.
    pub(super) fn start(net: &TestNet) -> (tokio::runtime::Runtime, Arc<AsyncIoTun>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("building the kernel peer's runtime: {e}"));
        let tun = AsyncIoTun::create(&net.tun_name, net.mtu)
            .unwrap_or_else(|e| panic!("creating TUN device {:?}: {e}", net.tun_name));
        crate::configure_kernel_side(&net.tun_name)
            .unwrap_or_else(|e| panic!("configuring TUN device {:?}: {e}", net.tun_name));
        (runtime, Arc::new(tun))
    }

    /// Shuts the kernel peer's runtime down.
    pub(super) fn stop(runtime: tokio::runtime::Runtime) {
        runtime.shutdown_timeout(Duration::from_secs(10));
    }
}

/// The `Send` smol flavour: an `async_executor::Executor` run by two threads.
pub mod smol_send {
    use std::cell::RefCell;
    use std::future::Future;
    use std::sync::Arc;

    pub use super::async_io_time::{sleep, timeout};
    pub use super::ShutdownExt as _;
    pub use futures::io::{AsyncReadExt as _, AsyncWriteExt as _};
    pub use netstack_smol::{PacketPort, StackBuilder, Stats, TcpListener};
    pub use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use async_executor::Executor;
    use netstack_examples::tun_async_io::AsyncIoTun;

    use super::SmolTask;
    use crate::TestNet;

    /// The TUN device as the flavour's packet pumps hold it.
    pub type TunHandle = Arc<AsyncIoTun>;

    thread_local! {
        /// The executor of the test running on this thread.
        static EXECUTOR: RefCell<Option<Arc<Executor<'static>>>> = const { RefCell::new(None) };
    }

    /// Runs `body` in a fresh namespace on an executor run by the namespace's thread and one
    /// more thread started from it.
    pub fn run<F, Fut>(net: TestNet, body: F)
    where
        F: FnOnce(TunHandle) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let name = format!("netns-{}", net.tun_name);
        crate::in_new_netns(&name, move || {
            let (runtime, tun) = super::smol_setup::start(&net);
            let ex = Arc::new(Executor::new());
            let (stop, stopped) = futures::channel::oneshot::channel::<()>();
            let worker = {
                let ex = ex.clone();
                let handle = runtime.handle().clone();
                std::thread::spawn(move || {
                    let _tokio = handle.enter();
                    EXECUTOR.with(|e| *e.borrow_mut() = Some(ex.clone()));
                    let _ = async_io::block_on(ex.run(stopped));
                    EXECUTOR.with(|e| e.borrow_mut().take());
                })
            };
            {
                let _tokio = runtime.enter();
                EXECUTOR.with(|e| *e.borrow_mut() = Some(ex.clone()));
                async_io::block_on(ex.run(body(tun)));
                EXECUTOR.with(|e| e.borrow_mut().take());
            }
            drop(stop);
            worker.join().expect("executor thread");
            drop(ex); // cancels what is left
            super::smol_setup::stop(runtime);
        });
    }

    /// Spawns `fut` on this test's executor.
    ///
    /// # Panics
    /// Outside [`run`].
    pub fn spawn<F>(fut: F) -> SmolTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        EXECUTOR.with(|e| {
            let ex = e.borrow();
            let ex = ex.as_ref().expect("spawn outside smol_send::run");
            SmolTask(Some(ex.spawn(fut)))
        })
    }

    common!();
}

/// The non-`Send` smol flavour: an `async_executor::LocalExecutor` on the namespace's thread.
pub mod smol_local {
    use std::cell::RefCell;
    use std::future::Future;
    use std::rc::Rc;
    use std::sync::Arc;

    pub use super::async_io_time::{sleep, timeout};
    pub use super::ShutdownExt as _;
    pub use futures::io::{AsyncReadExt as _, AsyncWriteExt as _};
    pub use netstack_smol::local::{PacketPort, StackBuilder, TcpListener};
    pub use netstack_smol::Stats;
    pub use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use async_executor::LocalExecutor;
    use netstack_examples::tun_async_io::AsyncIoTun;

    use super::SmolTask;
    use crate::TestNet;

    /// The TUN device as the flavour's packet pumps hold it.
    pub type TunHandle = Arc<AsyncIoTun>;

    thread_local! {
        /// The executor of the test running on this thread.
        static EXECUTOR: RefCell<Option<Rc<LocalExecutor<'static>>>> = const { RefCell::new(None) };
    }

    /// Runs `body` in a fresh namespace on a local executor driven by the namespace's thread.
    pub fn run<F, Fut>(net: TestNet, body: F)
    where
        F: FnOnce(TunHandle) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let name = format!("netns-{}", net.tun_name);
        crate::in_new_netns(&name, move || {
            let (runtime, tun) = super::smol_setup::start(&net);
            {
                let _tokio = runtime.enter();
                let ex = Rc::new(LocalExecutor::new());
                EXECUTOR.with(|e| *e.borrow_mut() = Some(ex.clone()));
                async_io::block_on(ex.run(body(tun)));
                EXECUTOR.with(|e| e.borrow_mut().take());
            }
            super::smol_setup::stop(runtime);
        });
    }

    /// Spawns `fut` on this test's local executor.
    ///
    /// # Panics
    /// Outside [`run`].
    pub fn spawn<F>(fut: F) -> SmolTask<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        EXECUTOR.with(|e| {
            let ex = e.borrow();
            let ex = ex.as_ref().expect("spawn outside smol_local::run");
            SmolTask(Some(ex.spawn(fut)))
        })
    }

    common!();
}

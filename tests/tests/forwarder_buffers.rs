//! `tun_forward`'s TCP buffers as a kernel client sees them: the receive window the forwarder
//! advertises is the buffer `--tcp-buffer` gave it (256 KiB by default), and after a bulk
//! upload the buffer that grew (up to `--tcp-buffer-max`, 4 MiB by default), read from the
//! client's own `TCP_INFO` in a private network namespace.

#![allow(unsafe_code)] // one `getsockopt(TCP_INFO)`, argued where it is

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use netstack_tests::forwarder::{counter, ForwarderProcess};
use netstack_tests::tun_forward_binary;

const LIMIT: Duration = Duration::from_secs(20);

/// The peer's receive window as the kernel last saw it (`tcpi_snd_wnd`, after window scaling).
fn send_window(stream: &TcpStream) -> u32 {
    // SAFETY: `info` is a plain C struct that zeroed bytes make valid; `len` tells the kernel
    // its size, and the kernel writes at most that many bytes into it. The descriptor is the
    // stream's, open for the whole call.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_snd_wnd
}

/// The windows a client was offered, and the forwarder's counters.
struct Offered {
    /// After one byte each way.
    first: u32,
    /// After a bulk upload, if the test made one.
    after_upload: Option<u32>,
    /// The forwarder's counters (stderr).
    stderr: String,
}

/// Bytes of the bulk upload.
const UPLOAD: usize = 256 << 20;

/// Starts `tun_forward` with `args` (plus `--redirect 127.0.0.1`), connects a kernel client
/// through it to a kernel server, exchanges one byte each way (so that the forwarder has
/// acknowledged data with a scaled window, which the SYN-ACK's is not) and reads the window
/// the client was offered; with `upload`, then sends [`UPLOAD`] bytes (the server reads them
/// all) and reads it again.
fn windows_offered_to_a_client(args: Vec<&'static str>, upload: bool) -> Offered {
    let mut all = vec!["--redirect", "127.0.0.1"];
    all.extend(args);
    let windows = std::sync::Arc::new(std::sync::Mutex::new((0, None)));
    let seen = windows.clone();
    let stderr = ForwarderProcess::run_in_new_netns(tun_forward_binary(), all, move |_pid| {
        let server = TcpListener::bind("127.0.0.1:9100").expect("bind the server");
        let target: SocketAddr = "198.19.0.10:9100".parse().unwrap();
        let mut client = TcpStream::connect_timeout(&target, LIMIT).expect("connect");
        client.set_read_timeout(Some(LIMIT)).unwrap();
        client.set_write_timeout(Some(LIMIT)).unwrap();
        let (mut upstream, _) = server.accept().expect("the forwarder's dial");
        upstream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut byte = [0u8; 1];
        client.write_all(b"x").unwrap();
        upstream.read_exact(&mut byte).expect("the byte, relayed");
        upstream.write_all(b"y").unwrap();
        client.read_exact(&mut byte).expect("the reply, relayed");
        assert_eq!(&byte, b"y");
        let first = send_window(&client);
        let after_upload = upload.then(|| {
            std::thread::scope(|s| {
                let reader = s.spawn(|| {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut got = 0;
                    while got < UPLOAD {
                        match upstream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) => panic!("the upload, relayed: {e}"),
                        }
                    }
                    got
                });
                let chunk = vec![7u8; 1 << 20];
                for _ in 0..UPLOAD / chunk.len() {
                    client.write_all(&chunk).expect("upload");
                }
                assert_eq!(reader.join().unwrap(), UPLOAD, "bytes relayed");
            });
            // One more byte each way, so that the window is announced after the upload.
            client.write_all(b"x").unwrap();
            upstream.read_exact(&mut byte).expect("the byte, relayed");
            upstream.write_all(b"y").unwrap();
            client.read_exact(&mut byte).expect("the reply, relayed");
            send_window(&client)
        });
        *seen.lock().unwrap() = (first, after_upload);
    });
    let (first, after_upload) = *windows.lock().unwrap();
    Offered {
        first,
        after_upload,
        stderr,
    }
}

/// The window offered after one byte each way.
fn window_offered_to_a_client(args: Vec<&'static str>) -> u32 {
    windows_offered_to_a_client(args, false).first
}

/// `offered` is `buffer` up to the granularity of window scaling and the byte in flight.
fn assert_about(offered: u32, buffer: u32, what: &str) {
    assert!(
        offered <= buffer && offered >= buffer - buffer / 16,
        "{what}: the client was offered a window of {offered} bytes, expected about {buffer}"
    );
}

#[test]
fn tun_forward_offers_clients_a_window_of_its_default_first_buffer_then_grows_it() {
    let offered = windows_offered_to_a_client(vec![], true);
    assert_about(offered.first, 256 << 10, "default, first");
    let grown = offered.after_upload.expect("uploaded");
    // The upload filled the buffer: it doubled at least once, and at most to 4 MiB.
    assert!(
        ((512 << 10) - (512 << 10) / 16..=4 << 20).contains(&grown),
        "after a {UPLOAD}-byte upload the client was offered {grown} bytes: {}",
        offered.stderr
    );
    assert!(
        counter(&offered.stderr, "tcp:", "buffers grown ") >= 1,
        "{}",
        offered.stderr
    );
}

#[test]
fn tun_forward_buffers_do_not_grow_past_tcp_buffer_max() {
    let offered = windows_offered_to_a_client(
        vec!["--tcp-buffer", "131072", "--tcp-buffer-max", "131072"],
        true,
    );
    assert_about(offered.first, 131_072, "first");
    assert_about(
        offered.after_upload.expect("uploaded"),
        131_072,
        "after the upload, with --tcp-buffer-max 131072",
    );
    assert_eq!(
        counter(&offered.stderr, "tcp:", "buffers grown "),
        0,
        "{}",
        offered.stderr
    );
}

#[test]
fn tun_forward_offers_clients_a_window_of_the_tcp_buffer_it_was_given() {
    assert_about(
        window_offered_to_a_client(vec!["--tcp-buffer", "131072"]),
        131_072,
        "--tcp-buffer 131072",
    );
    assert_about(
        window_offered_to_a_client(vec!["--tcp-buffer", "4194304"]),
        4 << 20,
        "--tcp-buffer 4194304",
    );
}

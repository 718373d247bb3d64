//! `tun_forward`'s TCP buffers as a kernel client sees them: the receive window the forwarder
//! advertises is the buffer `--tcp-buffer` gave it (1 MiB by default), read from the client's
//! own `TCP_INFO` in a private network namespace.

#![allow(unsafe_code)] // one `getsockopt(TCP_INFO)`, argued where it is

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use netstack_tests::forwarder::ForwarderProcess;
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

/// Starts `tun_forward` with `args` (plus `--redirect 127.0.0.1`), connects a kernel client
/// through it to a kernel server, exchanges one byte each way (so that the forwarder has
/// acknowledged data with a scaled window, which the SYN-ACK's is not) and returns the window
/// the client was offered.
fn window_offered_to_a_client(args: Vec<&'static str>) -> u32 {
    let mut all = vec!["--redirect", "127.0.0.1"];
    all.extend(args);
    let window = std::sync::Arc::new(std::sync::Mutex::new(0));
    let seen = window.clone();
    ForwarderProcess::run_in_new_netns(tun_forward_binary(), all, move |_pid| {
        let server = TcpListener::bind("127.0.0.1:9100").expect("bind the server");
        let target: SocketAddr = "198.19.0.10:9100".parse().unwrap();
        let mut client = TcpStream::connect_timeout(&target, LIMIT).expect("connect");
        client.set_read_timeout(Some(LIMIT)).unwrap();
        let (mut upstream, _) = server.accept().expect("the forwarder's dial");
        upstream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut byte = [0u8; 1];
        client.write_all(b"x").unwrap();
        upstream.read_exact(&mut byte).expect("the byte, relayed");
        upstream.write_all(b"y").unwrap();
        client.read_exact(&mut byte).expect("the reply, relayed");
        assert_eq!(&byte, b"y");
        *seen.lock().unwrap() = send_window(&client);
    });
    let offered = *window.lock().unwrap();
    offered
}

/// `offered` is `buffer` up to the granularity of window scaling and the byte in flight.
fn assert_about(offered: u32, buffer: u32, what: &str) {
    assert!(
        offered <= buffer && offered >= buffer - buffer / 16,
        "{what}: the client was offered a window of {offered} bytes, expected about {buffer}"
    );
}

#[test]
fn tun_forward_offers_clients_a_window_of_its_default_one_mebibyte_buffer() {
    assert_about(window_offered_to_a_client(vec![]), 1 << 20, "default");
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

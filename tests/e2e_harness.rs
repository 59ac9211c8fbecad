//! Self-tests of the end-to-end harness in `support/`: a real OpenVPN server and clients
//! with a tiny shell verifier, checking that the harness sees what it claims to see.
//!
//! Needs root and openvpn; see `support::require_root`.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{ClientOpts, Lab, ServerOpts, TunMode};

const CONNECT: Duration = Duration::from_secs(20);

/// Accepts only alice with password "good". With `once_marker`, it also refuses every
/// call after the first accepted one, like a one-time code replayed at renegotiation.
fn verify_script(lab: &Lab, once_marker: Option<PathBuf>) -> PathBuf {
    let mut body = String::from(
        "#!/bin/bash\n\
         # $1 names the via-file: username on line 1, password on line 2.\n\
         { read -r user; read -r pass; } < \"$1\"\n\
         [ \"$user\" = alice ] && [ \"$pass\" = good ] || exit 1\n",
    );
    if let Some(marker) = once_marker {
        let marker = marker.display();
        body.push_str(&format!("[ -e {marker} ] && exit 1\ntouch {marker}\n"));
    }
    body.push_str("exit 0\n");
    lab.write_script("verify.sh", &body)
}

fn server_with_script(script: &std::path::Path) -> ServerOpts {
    ServerOpts::new()
        .line("script-security 2")
        .line(format!("auth-user-pass-verify \"{}\" via-file", script.display()))
}

#[test]
fn good_credentials_connect_and_ping_through_the_tunnel() {
    let mut lab = Lab::new();
    let script = verify_script(&lab, None);
    lab.start_server(server_with_script(&script));

    let client = lab.start_client(ClientOpts::new("alice", "good"));
    client.wait_connected(CONNECT).unwrap();

    let ip = client.tunnel_ip().expect("pushed tunnel address in the client log");
    assert_eq!(ip.octets()[..3], lab.tunnel_net().octets()[..3]);
    let addr =
        support::netns_run(lab.client_ns(), &["ip", "-4", "-o", "addr", "show", client.dev()]);
    assert!(addr.contains(&ip.to_string()), "{ip} not on {}: {addr}", client.dev());

    let ping = lab.ping_from_client(&client, 3);
    assert!(ping.received > 0, "no ping replies through the tunnel:\n{}", ping.output);
    assert_eq!(ping.transmitted, 3);

    let status = lab.management("status 2").unwrap();
    assert!(status.contains("CLIENT_LIST,alice,"), "alice not in status:\n{status}");
}

#[test]
fn wrong_password_gets_auth_failed_and_the_client_exits() {
    let mut lab = Lab::new();
    let script = verify_script(&lab, None);
    lab.start_server(server_with_script(&script));

    let client = lab.start_client(ClientOpts::new("alice", "bad"));
    client.wait_auth_failed(CONNECT).unwrap();

    assert!(client.wait_exit(Duration::from_secs(10)), "client still running after AUTH_FAILED");
    assert_eq!(client.count(support::INIT_DONE), 0);
}

#[test]
fn password_accepted_only_once_fails_at_renegotiation_without_auth_gen_token() {
    let mut lab = Lab::new();
    let marker = lab.path("used-once");
    let script = verify_script(&lab, Some(marker.clone()));
    lab.start_server(server_with_script(&script).line("reneg-sec 20").line("hand-window 10"));

    let started = Instant::now();
    let client = lab.start_client(ClientOpts::new("alice", "good"));
    client.wait_connected(CONNECT).unwrap();
    assert!(marker.exists(), "verifier did not record the first login");

    // The server renegotiates after 18 to 20 s; the client resends the cached password,
    // which the verifier now refuses.
    lab.wait_server_log("TLS: soft reset", 1, Duration::from_secs(30)).unwrap();
    client.wait_auth_failed(Duration::from_secs(15)).unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(15), "failed too early ({elapsed:?}): not a reneg");
    assert!(client.wait_exit(Duration::from_secs(10)), "client still running after AUTH_FAILED");
}

#[test]
fn server_environment_reaches_the_verify_script() {
    let mut lab = Lab::new();
    let seen = lab.path("seen-env");
    let body = format!("#!/bin/bash\necho \"$E2E_PROBE\" > {}\nexit 0\n", seen.display());
    let script = lab.write_script("probe.sh", &body);
    lab.start_server(server_with_script(&script).env("E2E_PROBE", "from-the-harness"));

    let client = lab.start_client(ClientOpts::new("bob", "anything"));
    client.wait_connected(CONNECT).unwrap();
    let seen = std::fs::read_to_string(&seen).expect("probe script ran");
    assert_eq!(seen.trim(), "from-the-harness");
}

#[test]
fn two_labs_in_parallel_do_not_collide() {
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut lab = Lab::new();
                    let script = verify_script(&lab, None);
                    lab.start_server(server_with_script(&script));
                    let client = lab.start_client(ClientOpts::new("alice", "good"));
                    client.wait_connected(CONNECT).unwrap();
                    let ping = lab.ping_from_client(&client, 2);
                    assert!(ping.received > 0, "{}", ping.output);
                    let names = (lab.server_ns().to_owned(), lab.client_ns().to_owned());
                    (names, lab.port(), lab.tunnel_net(), lab.server_addr())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let (a, b) = (&outcomes[0], &outcomes[1]);
    assert_ne!(a.0 .0, b.0 .0);
    assert_ne!(a.0 .1, b.0 .1);
    assert_ne!(a.1, b.1);
    assert_ne!(a.2, b.2);
    assert_ne!(a.3, b.3);
}

#[test]
fn several_clients_share_the_client_namespace_and_the_first_has_the_tunnel() {
    let mut lab = Lab::new();
    let script = verify_script(&lab, None);
    lab.start_server(server_with_script(&script).line("duplicate-cn"));

    let first = lab.start_client(ClientOpts::new("alice", "good"));
    first.wait_connected(CONNECT).unwrap();
    let second = lab.start_client(ClientOpts::new("alice", "good"));
    let third = lab.start_client(ClientOpts::new("alice", "good").tun(TunMode::NoExec));
    second.wait_connected(CONNECT).unwrap();
    third.wait_connected(CONNECT).unwrap();

    assert!(first.has_tunnel() && !second.has_tunnel() && !third.has_tunnel());
    let ips = [&first, &second, &third].map(|c| c.tunnel_ip().expect("pushed address"));
    assert!(ips[0] != ips[1] && ips[1] != ips[2] && ips[0] != ips[2], "{ips:?}");
    assert!(lab.ping_from_client(&first, 2).received > 0);

    second.kill();
    assert!(!second.is_running());
    assert!(first.is_running() && third.is_running());
}

/// Regression: the device of a `TunMode::NoExec` client was left down, and such a client
/// stopped reading from the server at the first packet for its device, then restarted on
/// `ping-restart` about 13 s after connecting.
#[test]
fn a_client_without_a_configured_tunnel_keeps_its_connection() {
    let mut lab = Lab::new();
    let script = verify_script(&lab, None);
    lab.start_server(server_with_script(&script));
    let client = lab.start_client(ClientOpts::new("alice", "good").tun(TunMode::NoExec));
    client.wait_connected(CONNECT).unwrap();

    // The server forwards the IPv6 router solicitations of its own tun device to every
    // client, at growing intervals from its start. Once one went into the client's device,
    // wait longer than the client's ping-restart (10 s).
    let path = format!("/sys/class/net/{}/statistics/rx_packets", client.dev());
    let received = || support::netns_run(lab.client_ns(), &["cat", &path]).trim().to_owned();
    let arrived = support::wait_until(Duration::from_secs(20), || received() != "0");
    assert!(arrived, "nothing reached {}: the test is blind", client.dev());
    std::thread::sleep(Duration::from_secs(12));

    assert_eq!(client.count("Inactivity timeout"), 0, "{}", client.log());
    assert_eq!(client.count(support::INIT_DONE), 1, "{}", client.log());
}

#[test]
fn dropping_a_lab_removes_its_namespaces_and_processes() {
    let mut lab = Lab::new();
    lab.start_server(ServerOpts::new());
    let client = lab.start_client(ClientOpts::new("alice", "unchecked"));
    client.wait_connected(CONNECT).unwrap();
    let names = [lab.server_ns().to_owned(), lab.client_ns().to_owned()];
    let pid = client.pid();
    assert!(support::netns_list().contains(&names[0]));

    drop(lab);

    let left = support::netns_list();
    assert!(!names.iter().any(|name| left.contains(name)), "left behind: {left:?}");
    assert!(!is_openvpn(pid), "client openvpn {pid} still running");
}

#[test]
fn a_panicking_test_still_removes_its_namespaces() {
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new();
        names = vec![lab.server_ns().to_owned(), lab.client_ns().to_owned()];
        lab.start_server(ServerOpts::new());
        panic!("deliberate panic with a running server");
    }));

    assert!(outcome.is_err());
    let left = support::netns_list();
    assert!(!names.iter().any(|name| left.contains(name)), "left behind: {left:?}");
}

fn is_openvpn(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "openvpn")
}

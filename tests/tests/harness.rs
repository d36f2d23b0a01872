//! The test harness keeps its promises: a private server answers, stops, restarts on
//! its port, and leaves nothing behind.

use cache_page_tests::RedisServer;

#[tokio::test]
async fn private_server_stops_restarts_and_cleans_up() {
    let Some(mut server) =
        RedisServer::start_private("private_server_stops_restarts_and_cleans_up")
    else {
        return;
    };
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}/"));
    let pong: String = server.cmd(&["PING"]).await;
    assert_eq!(pong, "PONG");
    let () = server.cmd(&["SET", "k", "v"]).await;
    let saves: Vec<String> = server.cmd(&["CONFIG", "GET", "save"]).await;
    let saves = saves.join(" ");
    assert!(
        saves.trim_start_matches("save").trim().is_empty(),
        "persistence is off: {saves}"
    );

    let first_pid = server.pid().expect("running");
    server.stop();
    assert!(server.pid().is_none());
    assert!(
        server.client().get_connection().is_err(),
        "a stopped server still answers"
    );

    server.restart();
    assert_eq!(server.port(), port, "restarted on the same port");
    assert_ne!(server.pid(), Some(first_pid));
    let lost: Option<String> = server.cmd(&["GET", "k"]).await;
    assert_eq!(lost, None, "a restarted server starts empty");

    let pid = server.pid().expect("running");
    let dir = server.dir().expect("private").to_owned();
    assert!(dir.is_dir());
    drop(server);
    assert!(!dir.exists(), "the temporary directory was not removed");
    if cfg!(target_os = "linux") {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "redis-server {pid} was not reaped"
        );
    }
}

use redial::Follow;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::var("CACHE").unwrap_or_else(|_| "cache.svc.cluster.local:11211".into());
    let cm = redial::Manager::new();

    // One member per address the name resolves to, re-resolved every 30 s
    // and after a member's connection fails: new addresses get members,
    // members of addresses that left are drained.
    let pool = cm.create_pool_following("cache", Follow::new(&name), |_addr| {
        redial::handler().on_connect(|sock| { let _ = sock.send("version\r\n"); })
    })?;
    pool.wait_live(1).await;

    // A key goes to the same member while it is live; when a member goes
    // down only its keys move, and they come back with it.
    let member = pool.pick_for("user:42").ok_or("no live member")?;
    member.send("get user:42\r\n")?;
    println!("user:42 -> {}", member.endpoint());
    pool.disconnect().await;
    Ok(())
}

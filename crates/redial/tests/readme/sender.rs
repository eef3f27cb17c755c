#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("SINK").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let conn = redial::connect(&addr, redial::handler())?;
    conn.wait_connected().await?;

    let mut tx = conn.sender();
    for i in 0..1_000_000u32 {
        tx.write(i.to_be_bytes()).await?;          // held until 64 KiB, then handed over
    }
    tx.flush().await?;                             // what is left; do this before waiting for a reply
    conn.disconnect().await;                       // everything written, then FIN
    Ok(())
}

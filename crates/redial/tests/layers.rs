//! The layers hold: the pure core (`src/core/`) names no runtime and no
//! socket, so its rules stay testable with time passed in.

use std::path::Path;

#[test]
fn the_core_uses_no_runtime_and_no_sockets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("src/core exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for banned in ["tokio", "socket2", "std::net", "std::thread::sleep"] {
                assert!(
                    !code.contains(banned),
                    "{}:{}: the core must not use `{banned}`: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the core's files in {}",
        dir.display()
    );
}

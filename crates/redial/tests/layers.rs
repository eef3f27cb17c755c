//! The layers hold: the pure core (`src/core/`) names no runtime, no
//! socket, no thread and no clock of its own, so its rules stay testable
//! with time passed in; every time stamp reads one clock; and no function
//! in the library is longer than a reader can hold in view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// What the core must not name anywhere, its tests included: the runtime
/// and the sockets belong to the driver, and the core is below every other
/// layer of the crate. Checked in code, with comments and strings left
/// out: the core's doc comments may say what it leaves to others.
const BANNED_IN_CORE: &[&str] = &[
    "tokio",
    "socket2",
    "libc",
    "std::net",
    "std::os",
    "std::thread",
    "crate::driver",
    "crate::handle",
    "crate::shared",
    "crate::clock",
];

/// What the core's own code must not name: it is handed the time, so its
/// decisions never depend on when they run. Its tests may take an origin
/// from the real clock (`let t0 = Instant::now()`) and move it by hand.
const BANNED_IN_CORE_CODE: &[&str] = &["Instant::now", "SystemTime"];

#[test]
fn the_core_uses_no_runtime_no_sockets_and_no_clock() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let files = rust_files(&dir);
    let test_only = test_only_modules(&dir.join("mod.rs"));
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable file");
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let mut in_tests = test_only.iter().any(|m| m == stem);
        for (n, line) in blank_comments_and_literals(&text).lines().enumerate() {
            // A file's tests come last, after a `#[cfg(test)]` of its own.
            in_tests |= line.starts_with("#[cfg(test)]");
            // `std :: net`, and a group: `use std::{net::TcpStream, ..}`
            // names `std::` and `net::` apart.
            let code: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            let grouped = code.starts_with("usestd::{") || code.starts_with("pubusestd::{");
            let mut banned: Vec<&str> = BANNED_IN_CORE.to_vec();
            if !in_tests {
                banned.extend(BANNED_IN_CORE_CODE);
            }
            for word in banned {
                let member = word.strip_prefix("std::").filter(|_| grouped);
                let hit = code.contains(word)
                    || member.is_some_and(|m| {
                        code.contains(&format!("{{{m}")) || code.contains(&format!(",{m}"))
                    });
                assert!(
                    !hit,
                    "{}:{}: the core must not use `{word}`: {}",
                    path.display(),
                    n + 1,
                    text.lines().nth(n).unwrap_or(""),
                );
            }
        }
    }
    assert!(
        files.len() >= 3,
        "expected the core's files in {}",
        dir.display()
    );
}

/// The library's files without their tests, each as its path under
/// `src/`, its text, and its code: the text with comments and literals
/// blanked, up to its `#[cfg(test)]` part. Modules only tests build are
/// left out.
fn library_code() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for path in rust_files(&src) {
        if is_test_only(&path) {
            continue;
        }
        let file = path.strip_prefix(&src).unwrap_or(&path);
        let file = file.display().to_string().replace('\\', "/");
        let text = std::fs::read_to_string(&path).expect("readable file");
        let mut code = blank_comments_and_literals(&text);
        // A file's tests come last, after a `#[cfg(test)]` of its own.
        if let Some(at) = code.find("\n#[cfg(test)]") {
            code.truncate(at);
        }
        out.push((file, text, code));
    }
    out
}

/// Whether the module in `path` is declared under `#[cfg(test)]` by its
/// parent (`mod.rs` beside it, or `lib.rs`).
fn is_test_only(path: &Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    ["mod.rs", "lib.rs"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists() && p != path)
        .any(|p| test_only_modules(&p).iter().any(|m| m == stem))
}

/// The modules a `mod.rs` declares under `#[cfg(test)]`: test code as a
/// whole.
fn test_only_modules(mod_rs: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(mod_rs).expect("readable mod.rs");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| w[1].strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// Where the library may read the system's clock itself, and why. Every
/// other time stamp reads `clock::now` (the runtime's clock, which a
/// paused test moves), and deadlines the runtime's `Instant`.
const SYSTEM_CLOCK_READERS: &[(&str, &str)] = &[
    ("clock.rs", "the one clock, outside a runtime"),
    // A blocking wait parks its thread on real time.
    (
        "handle/disconnect.rs",
        "Disconnecting::wait_blocking's deadline",
    ),
    ("handle/connection.rs", "wait_connected_blocking's deadline"),
    // Not a time stamp: a seed for the jitter of backoff and lifetimes.
    ("handle/manager.rs", "the manager's random seed"),
];

#[test]
fn time_stamps_read_one_clock() {
    let mut found = Vec::new();
    for (file, text, code) in library_code() {
        let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        // Does a bare `Instant` in this file mean the standard library's?
        let std_instant = squeezed
            .split(';')
            .any(|s| s.starts_with("usestd::time::") && s.contains("Instant"));
        for (n, line) in code.lines().enumerate() {
            let line: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            let reads = line.contains("std::time::Instant::now")
                || line.contains("SystemTime::now")
                || (std_instant && line.contains("Instant::now"))
                // The runtime's clock as a std `Instant`: that is `clock::now`.
                || line.contains("Instant::now().into_std()");
            if reads && !SYSTEM_CLOCK_READERS.iter().any(|(f, _)| *f == file) {
                found.push(format!(
                    "{file}:{}: {}",
                    n + 1,
                    text.lines().nth(n).unwrap_or("").trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the system's clock read outside clock.rs (use crate::clock::now):\n{}",
        found.join("\n")
    );
}

/// The public types the application is handed (what a reset, a close, an
/// error or an event says), which the driver fills in: they name nothing
/// of the driver, so the driver can change without touching them.
const DRIVER_FREE: &[&str] = &["reset.rs", "error.rs", "events.rs", "handler.rs"];

#[test]
fn the_public_types_name_nothing_of_the_driver() {
    let mut found = Vec::new();
    let code = library_code();
    for (file, _, code) in code
        .iter()
        .filter(|(f, _, _)| DRIVER_FREE.contains(&f.as_str()))
    {
        for (n, line) in code.lines().enumerate() {
            let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if squeezed.contains("crate::driver") || squeezed.contains("super::driver") {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    let checked = code
        .iter()
        .filter(|(f, _, _)| DRIVER_FREE.contains(&f.as_str()))
        .count();
    assert_eq!(
        checked,
        DRIVER_FREE.len(),
        "expected {DRIVER_FREE:?} under src/"
    );
    assert!(
        found.is_empty(),
        "a public type names the driver (move what it needs out of driver/):\n{}",
        found.join("\n")
    );
}

/// Where a socket may be shut, reset or sent a TLS close: every way a
/// connection ends goes through `Driver::end` and the steps beside it in
/// `driver/teardown.rs`; the others only define what those steps call.
const SOCKET_ENDERS: &[(&str, &str)] = &[
    ("driver/teardown.rs", "the one place a connection ends"),
    (
        "handle/socket.rs",
        "Socket::close_shared, called by teardown",
    ),
    ("driver/transport.rs", "close_notify of plain TCP or TLS"),
    ("driver/tls.rs", "close_notify of a TLS stream"),
];

#[test]
fn sockets_are_ended_in_one_place() {
    let mut found = Vec::new();
    for (file, _, code) in library_code() {
        for (n, line) in code.lines().enumerate() {
            let ends = ["set_linger(", "Shutdown::", "close_notify("]
                .iter()
                .any(|w| line.contains(w));
            if ends && !SOCKET_ENDERS.iter().any(|(f, _)| *f == file) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a socket ended outside driver/teardown.rs:\n{}",
        found.join("\n")
    );
}

/// The longest body, in lines between its braces, a function may have.
const MAX_BODY_LINES: usize = 80;

/// The workspace's other crates whose functions are held to the same
/// length: their code is read (and the benchmarks' figures trusted) as
/// much as the library's.
const SIBLINGS: &[&str] = &["redial-chaos", "redial-cli", "redial-bench", "redial-soak"];

/// Functions still longer than [`MAX_BODY_LINES`], as `file:name`, each
/// with why it waits. None: keep it so.
const TOO_LONG_FOR_NOW: &[&str] = &[];

#[test]
fn no_function_is_longer_than_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let found = functions_under(&src);
    // Each sibling only when it is part of this checkout.
    let siblings: Vec<(String, Function)> = SIBLINGS
        .iter()
        .map(|c| (c, src.join("../..").join(c).join("src")))
        .filter(|(_, dir)| dir.is_dir())
        .flat_map(|(c, dir)| {
            let found = functions_under(&dir);
            found
                .into_iter()
                .map(move |(file, f)| (format!("../{c}/src/{file}"), f))
        })
        .collect();
    for (file, f) in found.iter().chain(&siblings) {
        let key = format!("{file}:{}", f.name);
        if f.body_lines > MAX_BODY_LINES && !TOO_LONG_FOR_NOW.contains(&key.as_str()) {
            offenders.push(format!(
                "{file}:{}: fn {} has {} lines",
                f.line, f.name, f.body_lines
            ));
        }
    }
    // The scanner must be finding the crate's functions at all.
    assert!(
        found.len() > 500,
        "found only {} functions under {}",
        found.len(),
        src.display()
    );
    assert!(
        offenders.is_empty(),
        "functions longer than {MAX_BODY_LINES} lines (split them along their steps):\n{}",
        offenders.join("\n")
    );
}

/// The scanner itself, on the shapes this codebase has: strings, raw
/// strings, chars and lifetimes, comments with braces, trait methods
/// without bodies, function pointer types, nested functions.
#[test]
fn the_scanner_measures_bodies_and_skips_literals_and_comments() {
    let text = r####"
trait T {
    fn declared(&self) -> u8;
    fn defaulted(&self) {
        let _ = "}";
    }
}
fn pointer(f: fn(u8) -> u8) -> impl Fn() {
    // a brace in a comment: }
    /* and in a block comment: } /* nested } */ */
    let _ = '}';
    let _ = '\'';
    let _ = b'{';
    let _ = r#"a raw "}" string"#;
    let _ = "an escaped \" quote }";
    move || { f(1); }
}
fn with_lifetime<'a>(s: &'a str) -> &'a str where 'a: 'a {
    fn inner() {}
    inner();
    s
}
"####;
    let found: Vec<(String, usize, usize)> = functions(text)
        .into_iter()
        .map(|f| (f.name, f.line, f.body_lines))
        .collect();
    let expected: Vec<(String, usize, usize)> = vec![
        ("defaulted".into(), 4, 1),
        ("pointer".into(), 8, 8),
        ("with_lifetime".into(), 18, 3),
        ("inner".into(), 19, 0),
    ];
    assert_eq!(found, expected);
}

/// One function found in a file.
#[derive(Debug)]
struct Function {
    name: String,
    /// 1-based line of `fn`.
    line: usize,
    /// Lines strictly between the body's braces.
    body_lines: usize,
}

/// Every function with a body in the `.rs` files under `root`, with its
/// file's path from there.
fn functions_under(root: &Path) -> Vec<(String, Function)> {
    let mut out = Vec::new();
    for path in rust_files(root) {
        let text = std::fs::read_to_string(&path).expect("readable file");
        let file = path.strip_prefix(root).unwrap_or(&path);
        let file = file.display().to_string();
        out.extend(functions(&text).into_iter().map(|f| (file.clone(), f)));
    }
    out
}

/// Every `.rs` file under `dir` (build output left out), in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() && !path.ends_with("target") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text with every comment, string and char literal replaced by
/// spaces (line breaks kept), so braces and keywords that remain are code.
fn blank_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = c.clone();
    let mut i = 0;
    while i < c.len() {
        match literal_end(&c, i) {
            Some((from, to)) => {
                for ch in &mut out[from..to] {
                    if *ch != '\n' {
                        *ch = ' ';
                    }
                }
                i = to;
            }
            None => i += 1,
        }
    }
    out.into_iter().collect()
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// If a comment or a literal starts at `i`: the range to blank (the end
/// is past its last char).
fn literal_end(c: &[char], i: usize) -> Option<(usize, usize)> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let after_ident = i > 0 && is_ident(at(i - 1));
    match (at(i), at(i + 1)) {
        ('/', '/') => Some((i, (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len()))),
        ('/', '*') => Some((i, block_comment_end(c, i))),
        // `r"..."`, `r#"..."#`, `br"..."`; not `r#ident`, nor a name
        // ending in r.
        ('r', '"' | '#')
            if !after_ident || (at(i - 1) == 'b' && (i < 2 || !is_ident(at(i - 2)))) =>
        {
            raw_string_end(c, i).map(|end| (i + 1, end))
        }
        ('"', _) => Some((i, quoted_end(c, i + 1, '"'))),
        // '\n', '\'', '\u{..}'; the quote after the backslash is escaped.
        ('\'', '\\') => Some((i, quoted_end(c, i + 3, '\''))),
        // 'x' and b'x'; without the closing quote, a lifetime ('a).
        ('\'', _) if at(i + 2) == '\'' => Some((i, i + 3)),
        _ => None,
    }
}

/// The end of the (nested) block comment that opens at `i`.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i + 1 < c.len() {
        match (c[i], c[i + 1]) {
            ('/', '*') => {
                depth += 1;
                i += 2;
            }
            ('*', '/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    c.len()
}

/// The end of the raw string whose `r` is at `i`, if one is there.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
    let open = i + 1 + hashes;
    if c.get(open) != Some(&'"') {
        return None;
    }
    let closes = |k: usize| c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#'));
    Some(
        (open + 1..c.len())
            .find(|&k| closes(k))
            .map_or(c.len(), |k| k + 1 + hashes),
    )
}

/// The end of a literal whose content starts at `i`: past the first
/// `quote` that no backslash escapes.
fn quoted_end(c: &[char], mut i: usize, quote: char) -> usize {
    while i < c.len() && c[i] != quote {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    (i + 1).min(c.len())
}

/// Every function with a body in `text`, in the order its `fn` appears.
fn functions(text: &str) -> Vec<Function> {
    let code: Vec<char> = blank_comments_and_literals(text).chars().collect();
    let ident = is_ident;
    let line_of = |at: usize| code[..at].iter().filter(|&&ch| ch == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= code.len() {
        let is_fn = code[i] == 'f'
            && code[i + 1] == 'n'
            && (i == 0 || !ident(code[i - 1]))
            && code.get(i + 2).is_none_or(|&ch| !ident(ch));
        if !is_fn {
            i += 1;
            continue;
        }
        let mut j = i + 2;
        while j < code.len() && code[j].is_whitespace() {
            j += 1;
        }
        let name_start = j;
        while j < code.len() && ident(code[j]) {
            j += 1;
        }
        if j == name_start {
            // `fn(u8) -> u8`: a pointer type, not a function.
            i += 2;
            continue;
        }
        let name: String = code[name_start..j].iter().collect();
        // The body opens at the first `{` outside parentheses and
        // brackets; a `;` there first means a declaration without one.
        let mut depth = 0i32;
        let mut open = None;
        while j < code.len() {
            match code[j] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    open = Some(j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        if let Some(open) = open {
            let mut braces = 0i32;
            let mut k = open;
            while k < code.len() {
                match code[k] {
                    '{' => braces += 1,
                    '}' => {
                        braces -= 1;
                        if braces == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            let body_lines = (line_of(k) - line_of(open)).saturating_sub(1);
            out.push(Function {
                name,
                line: line_of(i),
                body_lines,
            });
        }
        i = name_start;
    }
    out
}

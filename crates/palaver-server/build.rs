//! Rebuilds the binary when a file of the web client is added, changed or
//! removed: the embedder tracks the files it saw, but not new ones.

fn main() {
    println!("cargo::rerun-if-changed=../../web");
}

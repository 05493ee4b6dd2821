//! `uniffi-bindgen`, built from the same UniFFI version as the core (they must match).

fn main() {
    uniffi::uniffi_bindgen_main()
}

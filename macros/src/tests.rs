//! Expansion tests: the pretty-printed expansion of a representative host (an insta snapshot a reviewer
//! reads like code), and what the checks say about bad arguments.

use quote::quote;

use crate::model::Env;

/// The repository root, where `examples/printerfacts/host.nix` is.
fn env() -> Env {
    Env { root: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")) }
}

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(e) => panic!("the expansion does not parse ({e}):\n{tokens}"),
    }
}

#[test]
fn a_representative_host_expands_to_a_host_implementation() {
    let args = quote! {
        instance_type = "t3.micro",
        root_volume(size_gib = 40, volume_type = "gp3"),
        configuration = "examples/printerfacts/host.nix",
        host_key = console,
        health_checks(http(port = 80, path = "/fact"), command("systemctl", "is-active", "printerfacts")),
        nixos(paranix.services.printerfacts.domain = public_ip, networking.hostName = "printerfacts", paranix.services.printerfacts.acme.email = self.acme_email),
        tags(Project = "printerfacts"),
    };
    let item = quote! {
        /// The printerfacts host.
        pub struct Printerfacts {
            pub ami: Output<ImageId>,
            pub key_name: Output<KeyName>,
            pub security_groups: Vec<Output<SecurityGroupId>>,
            pub private_key: Output<String>,
            pub acme_email: String,
        }
    };
    insta::assert_snapshot!(pretty(crate::expand(args, item, &env())));
}

/// The error messages of an expansion that fails, one per line.
fn errors(args: proc_macro2::TokenStream) -> String {
    let item = quote! {
        struct Web { ami: Output<ImageId>, key_name: Output<KeyName>, security_groups: Vec<Output<SecurityGroupId>> }
    };
    let file: syn::File = syn::parse2(crate::expand(args, item, &env())).expect("the expansion parses");
    assert!(
        file.items.iter().any(|i| matches!(i, syn::Item::Struct(s) if s.ident == "Web")),
        "the item is kept next to the errors"
    );
    let messages: Vec<String> = file
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "compile_error") => {
                Some(syn::parse2::<syn::LitStr>(m.mac.tokens.clone()).expect("a message").value())
            }
            _ => None,
        })
        .collect();
    messages.join("\n")
}

#[test]
fn every_error_is_reported_at_once_and_the_item_is_kept() {
    let messages = errors(quote! {
        instance_type = "t3.mirco",
        configuration = "examples/printerfacts/hots.nix",
        root_volume(size_gib = 0),
        colour = "blue",
    });
    assert!(messages.contains(r#"did you mean "t3.micro""#), "{messages}");
    assert!(messages.contains("examples/printerfacts/host.nix"), "lists the .nix files there: {messages}");
    assert!(messages.contains("0 GiB is outside 1..=16384"), "{messages}");
    assert!(messages.contains("unknown argument `colour`"), "{messages}");
    assert_eq!(messages.lines().count(), 4, "{messages}");
}

#[test]
fn option_paths_must_not_overlap_and_values_must_be_known() {
    let messages = errors(quote! {
        instance_type = "t4g.small",
        configuration = "examples/printerfacts/host.nix",
        nixos(a.b = 1, a.b.c = 2, x = public_ipp, y = self.nope, services._module.args = 1, _type = "override"),
    });
    assert!(messages.contains("`a.b.c` overlaps `a.b`"), "{messages}");
    assert!(messages.contains("`_module` in `services._module.args` is not an option name"), "{messages}");
    assert!(messages.contains("`_type` in `_type` is not an option name"), "{messages}");
    assert!(messages.contains("unknown instance output `public_ipp`; did you mean `public_ip`?"), "{messages}");
    assert!(messages.contains("unknown field `nope`"), "{messages}");
}

#[test]
fn the_nix_system_is_left_to_the_instance_type() {
    // `HostSpec` derives it (Graviton: aarch64-linux) when the host is added, so a use that changes the instance
    // type (`spec().instance_type("t4g.small")`) also changes the system; pinning it here would not.
    let item = quote! {
        struct Web { ami: Output<ImageId>, key_name: Output<KeyName>, security_groups: Vec<Output<SecurityGroupId>> }
    };
    let args = quote!(instance_type = "t4g.small", configuration = "examples/printerfacts/host.nix");
    let out = crate::expand(args, item, &env()).to_string();
    assert!(out.contains("\"t4g.small\""), "{out}");
    assert!(!out.contains(". system ("), "{out}");
}

#[test]
fn tags_and_names_follow_the_sdk_rules() {
    // The same checks as the SDK's run-time validation (one shared file), at compile time.
    let messages = errors(quote! {
        instance_type = "t3.micro",
        configuration = "examples/printerfacts/host.nix",
        name = "9lives",
        tags("paranix:stack" = "x", "AWS:owner" = "y"),
    });
    assert!(messages.contains("must start with a letter or `_`"), "{messages}");
    assert!(messages.contains(r#"tag key "paranix:stack" uses a reserved prefix"#), "{messages}");
    assert!(messages.contains(r#"tag key "AWS:owner" uses a reserved prefix"#), "{messages}");
}

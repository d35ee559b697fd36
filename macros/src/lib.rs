//! `paranix-macros`: the `#[host]` attribute of paranix. Use it through `paranix::host`; its documentation
//! (with the equivalent code without the macro) is there.
//!
//! The attribute runs in three steps, one module each: `args` parses the arguments keeping every value's
//! span, `model` checks them against the item and builds a validated host definition (collecting every
//! error, not just the first), and `codegen` writes the `Host` implementation with absolute paths through
//! `::paranix::__private`. On any error the original item is emitted unchanged next to the errors, so
//! IDEs keep resolving it.

use proc_macro::TokenStream;

mod args;
mod catalog {
    //! The input limits shared with the SDK (one file, two crates): names, tags, instance types, volumes.
    #![allow(dead_code, unreachable_pub, reason = "shared with the SDK, which uses every item")]
    include!("../../sdk/src/aws/catalog.rs");
}
mod codegen;
mod model;

/// Declares a NixOS host. See `paranix::host` for the documentation.
#[proc_macro_attribute]
pub fn host(args: TokenStream, item: TokenStream) -> TokenStream {
    let env = model::Env::from_compiler();
    expand(args.into(), item.into(), &env).into()
}

/// The whole expansion: the item and its `Host` implementation, or the item and the errors.
fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
    env: &model::Env,
) -> proc_macro2::TokenStream {
    let parsed = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(item) => item,
        // Not an item rustc would accept either: let rustc report it.
        Err(error) => return error.to_compile_error(),
    };
    let result = args::parse(args).and_then(|args| model::check(&args, &parsed, env));
    match result {
        Ok(host) => codegen::generate(&parsed, &host),
        Err(error) => {
            let errors = error.to_compile_error();
            quote::quote! { #item #errors }
        }
    }
}

#[cfg(test)]
mod tests;

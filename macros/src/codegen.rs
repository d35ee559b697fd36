//! Writing the `Host` implementation. Every path is absolute and goes through `::paranix::__private`, so the
//! expansion works whatever the user's module imports; field accesses carry the span of the field's type, so
//! a wrongly typed field is reported there.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::model::{Check, HostDef, HostKey, OptValue};

/// The item, unchanged, followed by its `Host` implementation.
pub(crate) fn generate(item: &syn::Item, host: &HostDef) -> TokenStream {
    let ident = &host.ident;
    let name = &host.name;
    let configuration = &host.configuration;
    let instance_type = &host.instance_type;
    let p = quote!(::paranix::__private);

    let mut steps = Vec::new();
    // The Nix system follows the instance type in `HostSpec` (Graviton: aarch64-linux), also when a use of the
    // host changes the type afterwards.
    steps.push(quote!(spec = spec.instance_type(#instance_type);));
    if let Some((size, volume_type)) = &host.root_volume {
        steps.push(quote!(spec = spec.root_volume(#size, #volume_type);));
    }
    // Options and tags first: option values may read any field (cloned), before the role fields move.
    for (path, value) in &host.options {
        let path = quote!(&[#(#path),*]);
        steps.push(match value {
            OptValue::Str(s) => quote!(spec = spec.option(#path, #s);),
            OptValue::Int(n) => quote!(spec = spec.option(#path, #n);),
            OptValue::Bool(b) => quote!(spec = spec.option(#path, #b);),
            OptValue::Field(f) => quote!(spec = spec.option(#path, ::core::clone::Clone::clone(&self.#f));),
            OptValue::Instance(output) => {
                let variant = match *output {
                    "public_ip" => quote!(PublicIp),
                    "private_ip" => quote!(PrivateIp),
                    "public_dns" => quote!(PublicDns),
                    _ => quote!(Id),
                };
                quote!(spec = spec.option_from_instance(#path, #p::InstanceOutput::#variant);)
            }
        });
    }
    for (key, value) in &host.tags {
        steps.push(quote!(spec = spec.tag(#key, #value);));
    }
    // Errors about a field's type point at the type; names still resolve at the call site (hygiene).
    let at = |span: proc_macro2::Span| proc_macro2::Span::call_site().located_at(span);
    let wire = |field: &crate::model::RoleField, ty: TokenStream| {
        let f = &field.ident;
        quote_spanned!(at(field.ty_span)=> #p::wire::<#ty, _>(self.#f))
    };
    let ami = wire(&host.ami, quote!(#p::ImageId));
    let key_name = wire(&host.key_name, quote!(#p::KeyName));
    steps.push(quote!(spec = spec.ami(#ami).key_name(#key_name);));
    let groups = &host.security_groups.ident;
    let group = quote_spanned!(at(host.security_groups.ty_span)=> #p::wire::<#p::SecurityGroupId, _>(group));
    steps.push(quote! {
        for group in self.#groups {
            spec = spec.security_group(#group);
        }
    });
    if let Some(field) = &host.private_key {
        let key = wire(field, quote!(::std::string::String));
        steps.push(quote!(spec = spec.private_key(#key);));
    }
    steps.push(match (host.host_key, &host.host_key_field) {
        (HostKey::Pinned, Some(field)) => {
            let key = wire(field, quote!(#p::PublicKey));
            quote!(spec = spec.host_key(#p::HostKeyPolicy::Pinned(#key));)
        }
        (HostKey::TrustOnFirstUse, _) => quote!(spec = spec.host_key(#p::HostKeyPolicy::TrustOnFirstUse);),
        _ => quote!(spec = spec.host_key(#p::HostKeyPolicy::Console);),
    });
    for check in &host.checks {
        steps.push(match check {
            Check::Http { port, path } => quote!(spec = spec.health_check(#p::HealthCheck::http(#port, #path));),
            Check::Command(argv) => quote!(spec = spec.health_check(#p::HealthCheck::command([#(#argv),*]));),
        });
    }

    quote! {
        #item

        impl #p::Host for #ident {
            const NAME: &'static str = #name;

            fn spec(self) -> #p::HostSpec {
                let mut spec = #p::HostSpec::new(<Self as #p::Host>::NAME, #configuration);
                #(#steps)*
                spec
            }
        }
    }
}

//! `#[wix_cluster::exchange("topic")]`: reads the topic (and `response = Type`), checks
//! the item, and emits the serde derives, the `Exchange` impl and the typed methods,
//! all through `::wix_cluster`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::{Data, DeriveInput, Ident, LitStr, Token, Type};

use crate::errors::Errors;

/// What the attribute's arguments say.
struct Args {
    topic: LitStr,
    response: Option<Type>,
}

fn parse_args(args: TokenStream) -> syn::Result<Args> {
    let parser = |input: ParseStream| -> syn::Result<Args> {
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[wix_cluster::exchange] needs a topic: #[wix_cluster::exchange(\"orders\")]",
            ));
        }
        let topic: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "the topic comes first, as a string: #[wix_cluster::exchange(\"orders\")]",
            )
        })?;
        let mut response = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            if key != "response" {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown argument `{key}`; expected `response = Type`"),
                ));
            }
            if response.is_some() {
                return Err(syn::Error::new(key.span(), "`response` set multiple times"));
            }
            input.parse::<Token![=]>()?;
            response = Some(input.parse::<Type>()?);
        }
        Ok(Args { topic, response })
    };
    parser.parse2(args)
}

pub(crate) fn exchange(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = match parse_args(args) {
        Ok(args) => Some(args),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if let Some(args) = &args {
        let topic = args.topic.value();
        if topic.trim().is_empty() {
            errors.at(args.topic.span(), "the topic must not be empty");
        }
        if topic.starts_with("wix_cluster.") {
            errors.at(
                args.topic.span(),
                "topics starting with \"wix_cluster.\" are reserved for wix-cluster's own messages; choose another topic",
            );
        }
    }
    let input: DeriveInput = match syn::parse2(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            errors.at(
                Span::call_site(),
                "#[wix_cluster::exchange] goes on a struct or an enum",
            );
            return with_errors(item, errors);
        }
    };
    if let Data::Union(union) = &input.data {
        errors.spanned(
            union.union_token,
            "#[wix_cluster::exchange] goes on a struct or an enum, not a union",
        );
    }
    if !input.generics.params.is_empty() {
        errors.spanned(
            &input.generics,
            "an exchange type cannot be generic: a topic carries one concrete type",
        );
    }
    match (args, errors.is_empty()) {
        (Some(args), true) => expand(&args, &input),
        _ => with_errors(item, errors),
    }
}

/// The item as written plus every error, so the rest of the program still sees the type.
fn with_errors(item: TokenStream, errors: Errors) -> TokenStream {
    let errors = errors.into_compile_errors();
    quote! { #item #errors }
}

fn expand(args: &Args, input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let vis = &input.vis;
    let topic = &args.topic;
    let response = match &args.response {
        Some(ty) => quote!(#ty),
        None => quote!(Self),
    };
    // Two types on one topic define this symbol twice: a compile error in one crate, a
    // link error across crates, and the symbol's name says what is wrong.
    let claim = format!(
        "wix_cluster: exchange topic {:?} is claimed by more than one type",
        topic.value()
    );
    let claim_static = format_ident!("__WIX_CLUSTER_TOPIC_OF_{}", ident);
    let private = quote!(::wix_cluster::__private::exchange);
    let result = quote!(::core::result::Result);
    let error = quote!(::wix_cluster::ExchangeError);
    let borrow = quote!(impl ::core::borrow::Borrow<Self>);
    let derive = quote_spanned! {ident.span()=>
        #[derive(::wix_cluster::__private::serde::Serialize, ::wix_cluster::__private::serde::Deserialize)]
        #[serde(crate = "::wix_cluster::__private::serde")]
    };
    quote! {
        #derive
        #input

        const _: () = {
            #[used]
            #[allow(non_upper_case_globals)]
            #[unsafe(export_name = #claim)]
            static #claim_static: u8 = 0;

            impl ::wix_cluster::Exchange for #ident {
                const TOPIC: &'static str = #topic;
                type Response = #response;
            }
        };

        #[allow(dead_code)]
        impl #ident {
            /// Sends this message to the master's subscribers of its topic.
            #vis fn send(&self) -> #result<(), #error> {
                #private::send(self)
            }

            /// The messages on this type's topic that reach this process.
            #vis fn subscribe() -> #result<::wix_cluster::Subscription<Self>, #error> {
                #private::subscribe::<Self>()
            }

            /// Sends `msg` to every worker and the master's own subscribers (master only).
            #vis fn broadcast(msg: #borrow) -> #result<(), #error> {
                #private::broadcast::<Self>(msg)
            }

            /// Sends `msg` to one worker (master only).
            #vis fn send_to(worker: ::wix_cluster::WorkerId, msg: #borrow) -> #result<(), #error> {
                #private::send_to::<Self>(worker, msg)
            }

            /// Asks the master's handler for this topic; times out after 1000 ms.
            #vis async fn request(query: #borrow) -> #result<#response, #error> {
                #private::request::<Self>(query).await
            }

            /// Asks the master's handler for this topic, waiting up to `timeout`.
            #vis async fn request_within(
                query: #borrow,
                timeout: ::core::time::Duration,
            ) -> #result<#response, #error> {
                #private::request_within::<Self>(query, timeout).await
            }

            /// Registers the master's one handler for requests on this topic.
            #vis fn handle<F, Fut>(handler: F) -> #result<(), #error>
            where
                F: ::core::ops::Fn(::wix_cluster::Peer, Self) -> Fut
                    + ::core::marker::Send
                    + ::core::marker::Sync
                    + 'static,
                Fut: ::core::future::Future<Output = #response> + ::core::marker::Send + 'static,
            {
                #private::handle::<Self, F, Fut>(handler)
            }
        }
    }
}

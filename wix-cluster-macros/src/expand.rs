//! Code generation for `#[wix_cluster::main]`: a synchronous `fn main` that nests the
//! user's `async fn main` and hands it to `Cluster::builder()`, through absolute paths
//! into `::wix_cluster::__private` so that nothing in the user's scope can change them.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ReturnType, Signature};

use crate::attr::{
    self, Args, Flavor, MainFn, Plugin, PluginType, Setting, SettingValue, SingleProcess, Workers,
};
use crate::errors::Errors;
use crate::units::Quantity;

/// Expands one `#[wix_cluster::main(args)] item`.
///
/// Every mistake becomes a `compile_error!` at its own span, and the user's function is
/// still emitted (as close to the real expansion as the mistakes allow) so that the IDE
/// keeps seeing it and rustc reports nothing about a missing or `async` `main` on top.
pub(crate) fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = attr::parse_args(args, &mut errors);
    let main = match syn::parse2::<MainFn>(item.clone()) {
        Ok(main) => main,
        Err(error) => {
            errors.push(error);
            let mut tokens = item;
            tokens.extend(errors.into_compile_errors());
            return tokens;
        }
    };
    let mut fn_errors = Errors::default();
    main.check(&mut fn_errors);
    let runnable = fn_errors.is_empty();
    errors.append(fn_errors);

    let mut tokens = wrap(&args, &main, runnable);
    tokens.extend(errors.into_compile_errors());
    tokens
}

/// The generated `fn main`. When the user's function has a mistake, `run` is not
/// called (it would only add type errors about that same mistake), but the builder
/// calls are still made, so that mistakes in the plugins show up in the same compile.
fn wrap(args: &Args, main: &MainFn, runnable: bool) -> TokenStream {
    let MainFn {
        attrs,
        vis,
        sig,
        body,
    } = main;
    let ident = &sig.ident;
    // Named `main` even when the user's function is not (that is reported), so that rustc
    // does not add that the crate has no `main`.
    let outer = Ident::new("main", ident.span());
    // Docs describe the program's entry point and `cfg` decides whether it exists: they
    // go on the outer function. Everything else (lints, `tracing::instrument`, ...) is
    // about the user's code, so it stays on the user's function.
    let (outer_attrs, inner_attrs): (Vec<&Attribute>, Vec<&Attribute>) = attrs
        .iter()
        .partition(|attr| attr.path().is_ident("doc") || attr.path().is_ident("cfg"));
    let builder = builder(args);
    let tail = if runnable {
        // Type errors in `run(main)` point into the signature, not at the whole
        // attribute: the call (parenthesized so that it starts there) at the name, and
        // `run`, whose bound requires an output of `()` or `Result<(), E: Display>`, at
        // the return type.
        let run = Ident::new("run", output_span(sig));
        quote_spanned!(ident.span()=> (#builder).#run(#ident))
    } else {
        quote! {
            let _ = #builder;
            ::std::process::ExitCode::FAILURE
        }
    };
    // A function taking `self` cannot be nested in another (rustc would say so again,
    // after our error): leave it out.
    let takes_self = sig
        .inputs
        .iter()
        .any(|input| matches!(input, FnArg::Receiver(_)));
    let user_fn = (!takes_self).then(|| {
        let allow_unused = (!runnable).then(|| quote!(#[allow(dead_code)]));
        quote! {
            #(#inner_attrs)*
            #allow_unused
            #sig #body
        }
    });
    quote! {
        #(#outer_attrs)*
        #vis fn #outer() -> ::std::process::ExitCode {
            #user_fn
            #tail
        }
    }
}

/// Where the return type is written; the function's name for the implicit `()`.
fn output_span(sig: &Signature) -> Span {
    match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.ident.span(),
    }
}

/// `Cluster::builder()` followed by one call per argument given, in the documented
/// order. Method names and values carry the spans of the arguments they come from, so a
/// type error points at what the user wrote.
fn builder(args: &Args) -> TokenStream {
    let Args {
        workers,
        plugins,
        without,
        single_process,
        flavor,
        worker_threads,
        management,
        management_page,
        watch,
        request_metrics,
        header_read_timeout,
        idle_timeout,
        body_read_timeout,
        max_header_bytes,
    } = args;
    let workers = workers.as_ref().map(|setting| match setting.value {
        Workers::Count(n) => count(&Setting {
            key: setting.key.clone(),
            value: n,
            span: setting.span,
        }),
        Workers::Auto => quote_spanned!(setting.span=> .workers_auto()),
    });
    let plugins = plugins.iter().map(plugin);
    let without = without.iter().map(|ident| {
        quote_spanned!(ident.span()=> .without(::wix_cluster::__private::DefaultPlugin::#ident))
    });
    let single_process = single_process.as_ref().map(|setting| {
        let variant = Ident::new(
            match setting.value {
                SingleProcess::Auto => "Auto",
                SingleProcess::Always => "Always",
                SingleProcess::Never => "Never",
            },
            setting.span,
        );
        call(
            setting,
            quote_spanned!(setting.span=> ::wix_cluster::__private::SingleProcess::#variant),
        )
    });
    let flavor = flavor.as_ref().map(|setting| {
        let variant = Ident::new(
            match setting.value {
                Flavor::CurrentThread => "CurrentThread",
                Flavor::MultiThread => "MultiThread",
            },
            setting.span,
        );
        call(
            setting,
            quote_spanned!(setting.span=> ::wix_cluster::__private::Flavor::#variant),
        )
    });
    let worker_threads = worker_threads.as_ref().map(count);
    let management = management.as_ref().map(|setting| {
        let mut addr = Literal::string(&setting.value);
        addr.set_span(setting.span);
        call(setting, addr)
    });
    // The management app's settings have one path, `ManagementApp::builder()`; the
    // page's call is spanned at the key, so a page that is not a router points there.
    let management_page = management_page.as_ref().map(|setting| {
        let function = &setting.value;
        let key = setting.key.span();
        let page = method_call(
            &Ident::new("page", key),
            quote_spanned!(setting.span=> #function()),
        );
        quote_spanned! {key=>
            .management_app(::wix_cluster::ManagementApp::builder() #page .build())
        }
    });
    let [watch, request_metrics] = [watch, request_metrics].map(|setting| {
        setting.as_ref().map(|setting| {
            let value = syn::LitBool::new(setting.value, setting.span);
            call(setting, value)
        })
    });
    let timeouts = [header_read_timeout, idle_timeout, body_read_timeout].map(|setting| {
        setting.as_ref().map(|setting| {
            let mut nanos = Literal::u64_unsuffixed(setting.value);
            nanos.set_span(setting.span);
            call(
                setting,
                quote_spanned!(setting.span=> ::core::time::Duration::from_nanos(#nanos)),
            )
        })
    });
    let [header_read_timeout, idle_timeout, body_read_timeout] = timeouts;
    let max_header_bytes = max_header_bytes.as_ref().map(|setting| {
        let mut bytes = Literal::u64_unsuffixed(setting.value);
        bytes.set_span(setting.span);
        call(setting, bytes)
    });
    // The program's version for the management app, read where the program is built.
    let version = quote! {
        .app_version(::core::option_env!("CARGO_PKG_VERSION").unwrap_or(""))
    };
    quote! {
        ::wix_cluster::__private::Cluster::builder()
            #workers
            #(#plugins)*
            #(#without)*
            #single_process
            #flavor
            #worker_threads
            #management
            #management_page
            #watch
            #request_metrics
            #header_read_timeout
            #idle_timeout
            #body_read_timeout
            #max_header_bytes
            #version
    }
}

/// `.workers(4)`, `.worker_threads(2)`.
fn count(setting: &Setting<usize>) -> TokenStream {
    let mut value = Literal::usize_unsuffixed(setting.value);
    value.set_span(setting.span);
    call(setting, value)
}

/// `.key(value)`, the method named by the argument as the user wrote it.
fn call<T>(setting: &Setting<T>, value: impl ToTokens) -> TokenStream {
    method_call(&setting.key, value)
}

/// `.key(value)`, all of it but `value` spanned at `key`: an error about the call then
/// points at the key alone, not at the whole attribute as well.
fn method_call(key: &Ident, value: impl ToTokens) -> TokenStream {
    quote_spanned!(key.span()=> .#key(#value))
}

/// `.plugin(<Type as Default>::default().key(value)...)`. The construction carries the
/// span of the plugin's name, each setter the span of its key.
fn plugin(plugin: &Plugin) -> TokenStream {
    let (span, construct) = match &plugin.ty {
        PluginType::Builtin(ident) => (
            ident.span(),
            quote_spanned! {ident.span()=>
                <::wix_cluster::__private::plugins::#ident as ::core::default::Default>::default()
            },
        ),
        PluginType::User(path) => {
            let span = path
                .segments
                .last()
                .map_or_else(Span::call_site, |segment| segment.ident.span());
            (
                span,
                quote_spanned!(span=> <#path as ::core::default::Default>::default()),
            )
        }
    };
    let settings = plugin
        .settings
        .iter()
        .map(|setting| method_call(&setting.key, setting_value(&setting.value)));
    quote_spanned!(span=> .plugin(#construct #(#settings)*))
}

/// A plugin setting's value: as written, or the duration or size a string literal was
/// read as, spanned at the literal so that a type error (`max_deaths = "5s"`) points
/// there.
fn setting_value(value: &SettingValue) -> TokenStream {
    match value {
        SettingValue::Expr(expr) => expr.to_token_stream(),
        SettingValue::Quantity(Quantity::Duration { nanos }, span) => {
            let mut nanos = Literal::u64_unsuffixed(*nanos);
            nanos.set_span(*span);
            quote_spanned!(*span=> ::core::time::Duration::from_nanos(#nanos))
        }
        SettingValue::Quantity(Quantity::Size { bytes }, span) => {
            // `536870912_u64`: typed, so that a setter generic over integers still gets a
            // `u64`. (`u64_suffixed` would write `536870912u64`, harder to read.)
            let mut bytes = format!("{bytes}_u64")
                .parse::<Literal>()
                .unwrap_or_else(|_| Literal::u64_suffixed(*bytes));
            bytes.set_span(*span);
            bytes.into_token_stream()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_builder_calls_on_a_nested_main() {
        let expanded = main(
            quote!(
                workers = 4,
                plugins(
                    Respawn,
                    Graceful(timeout = Duration::from_secs(5)),
                    my_mod::MyPlugin
                ),
                single_process = "auto",
                flavor = "multi_thread",
                worker_threads = 2,
                management = "127.0.0.1:9090",
                management_page = pages::admin
            ),
            quote!(
                /// Docs.
                #[allow(unused)]
                async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        let expected = quote! {
            #[doc = r" Docs."]
            fn main() -> ::std::process::ExitCode {
                #[allow(unused)]
                async fn main(worker: wix_cluster::Worker) -> std::io::Result<()> {
                    Ok(())
                }
                (::wix_cluster::__private::Cluster::builder()
                    .workers(4)
                    .plugin(<::wix_cluster::__private::plugins::Respawn as ::core::default::Default>::default())
                    .plugin(<::wix_cluster::__private::plugins::Graceful as ::core::default::Default>::default()
                        .timeout(Duration::from_secs(5)))
                    .plugin(<my_mod::MyPlugin as ::core::default::Default>::default())
                    .single_process(::wix_cluster::__private::SingleProcess::Auto)
                    .flavor(::wix_cluster::__private::Flavor::MultiThread)
                    .worker_threads(2)
                    .management("127.0.0.1:9090")
                    .management_app(::wix_cluster::ManagementApp::builder()
                        .page(pages::admin())
                        .build())
                    .app_version(::core::option_env!("CARGO_PKG_VERSION").unwrap_or("")))
                .run(main)
            }
        };
        assert_eq!(expanded.to_string(), expected.to_string());
    }

    #[test]
    fn durations_and_sizes_are_computed_at_compile_time() {
        let expanded = builder(&{
            let mut errors = Errors::default();
            let args = attr::parse_args(
                quote!(plugins(Stall(
                    timeout = "1.5s",
                    max_rss = "512MiB",
                    addr = "localhost:9090"
                ))),
                &mut errors,
            );
            assert!(errors.is_empty());
            args
        });
        let expected = quote! {
            ::wix_cluster::__private::Cluster::builder()
                .plugin(<::wix_cluster::__private::plugins::Stall as ::core::default::Default>::default()
                    .timeout(::core::time::Duration::from_nanos(1500000000))
                    .max_rss(536870912_u64)
                    .addr("localhost:9090"))
                .app_version(::core::option_env!("CARGO_PKG_VERSION").unwrap_or(""))
        };
        assert_eq!(expanded.to_string(), expected.to_string());
    }

    #[test]
    fn a_mistaken_function_is_kept_but_not_run_and_the_errors_follow_it() {
        let expanded = main(
            quote!(workers = 0),
            quote!(
                fn main(worker: wix_cluster::Worker) {}
            ),
        );
        let expected = quote! {
            fn main() -> ::std::process::ExitCode {
                #[allow(dead_code)]
                fn main(worker: wix_cluster::Worker) {}
                let _ = ::wix_cluster::__private::Cluster::builder()
                    .app_version(::core::option_env!("CARGO_PKG_VERSION").unwrap_or(""));
                ::std::process::ExitCode::FAILURE
            }
            ::core::compile_error! { "`workers` must be at least 1" }
            ::core::compile_error! {
                "the `async` keyword is missing: #[wix_cluster::main] goes on `async fn main(worker: wix_cluster::Worker)`"
            }
        };
        assert_eq!(expanded.to_string(), expected.to_string());
    }

    #[test]
    fn an_item_that_is_not_a_function_is_kept_as_written() {
        let expanded = main(
            quote!(),
            quote!(
                struct Main;
            ),
        );
        let expected = quote! {
            struct Main;
            ::core::compile_error! {
                "#[wix_cluster::main] goes on the program's `async fn main(worker: wix_cluster::Worker)`"
            }
        };
        assert_eq!(expanded.to_string(), expected.to_string());
    }
}

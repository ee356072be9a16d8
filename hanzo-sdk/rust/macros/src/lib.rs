//! Procedural macros behind the `hanzo-tool` crate; use them through `hanzo_tool::tool` and
//! `hanzo_tool::export!`, whose documentation describes the generated items.
//!
//! The expansions name the SDK as `::hanzo_tool`, so a tool crate must depend on `hanzo-tool`
//! under that name. They choose between the WASM and native shapes with `cfg` attributes in
//! the emitted code, since this crate runs on the build host, not the target. The one thing
//! read while expanding is whether Cargo is compiling a binary target (see
//! `in_binary_target`).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, FnArg, Ident, ItemFn, Lit, Meta, Path, ReturnType, Token, Type};

/// Names a tool must not take: they are the ABI's own exports, entry points of WASI modules,
/// items `export!` defines, or C symbols of the WASI libc that an export of the same name
/// would collide with at link time.
const RESERVED_NAMES: &[&str] = &[
    "memory",
    "hanzo_alloc",
    "hanzo_free",
    "hanzo_schema",
    "hanzo_main",
    "hanzo_tools",
    "_start",
    "_initialize",
    "main",
    "__main_void",
    "malloc",
    "free",
    "calloc",
    "realloc",
    "abort",
    "exit",
];

/// See `hanzo_tool::tool`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand_tool(attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        // Keep the function itself so its callers do not add a second wave of errors.
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens.into()
        }
    }
}

/// See `hanzo_tool::export!`.
#[proc_macro]
pub fn export(input: TokenStream) -> TokenStream {
    match expand_export(input.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The hidden constant that carries a tool's definition, derived from its exported name so
/// `export!(path::to::name)` can find it next to the function.
fn def_ident(name: &str, span: proc_macro2::Span) -> Ident {
    format_ident!("__hanzo_tool_{}", name, span = span)
}

fn expand_tool(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(attr, "#[tool] takes no arguments"));
    }
    let func: ItemFn = syn::parse2(item)?;
    let sig = &func.sig;

    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            token,
            "a tool must be a synchronous function: a WASM call runs to completion on one thread",
        ));
    }
    if let Some(token) = &sig.unsafety {
        return Err(syn::Error::new_spanned(token, "a tool cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new_spanned(
            abi,
            "a tool is a plain Rust function; #[tool] generates the `extern \"C\"` export",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a tool cannot be generic: its params and output types fix its JSON Schemas",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(variadic, "a tool cannot be variadic"));
    }
    let input_ty = match (sig.inputs.len(), sig.inputs.first()) {
        (1, Some(FnArg::Typed(arg))) => &arg.ty,
        (1, Some(FnArg::Receiver(receiver))) => {
            return Err(syn::Error::new_spanned(
                receiver,
                "#[tool] goes on a free function, not a method",
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                &sig.inputs,
                "a tool takes exactly one argument, its params (use `hanzo_tool::Value` to \
                 accept any JSON)",
            ));
        }
    };
    let (output_ty, fallible) = match &sig.output {
        ReturnType::Default => (quote!(()), false),
        ReturnType::Type(_, ty) => {
            let fallible = is_result(ty);
            let ty = if fallible {
                quote!(<#ty as ::hanzo_tool::__private::ResultOk>::Ok)
            } else {
                quote!(#ty)
            };
            (ty, fallible)
        }
    };

    let fn_ident = &sig.ident;
    let name = fn_ident.unraw().to_string();
    if RESERVED_NAMES.contains(&name.as_str()) {
        return Err(syn::Error::new_spanned(
            fn_ident,
            format!(
                "`{name}` cannot name a tool: the WASM module already uses that symbol \
                 (reserved: {})",
                RESERVED_NAMES.join(", ")
            ),
        ));
    }
    let description = doc_comment(&func.attrs);
    let vis = &func.vis;
    let def = def_ident(&name, fn_ident.span());
    // A tool compiled out must take its generated items along.
    let cfgs: Vec<&Attribute> = func.attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();

    // Local names carry a `__hanzo_` prefix: a local `params` would shadow a tool called
    // `params`, and the call below must reach the user's function.
    let call = if fallible {
        quote! {
            match #fn_ident(__hanzo_params) {
                ::core::result::Result::Ok(__hanzo_output) => ::hanzo_tool::to_output(&__hanzo_output),
                ::core::result::Result::Err(__hanzo_error) => {
                    ::core::result::Result::Err(::std::string::ToString::to_string(&__hanzo_error))
                }
            }
        }
    } else {
        quote!(::hanzo_tool::to_output(&#fn_ident(__hanzo_params)))
    };
    // The same call for the exports ABI: the output is written into the envelope from its
    // own type, with no `Value` in between (`ok_envelope` says why).
    let respond = if fallible {
        quote! {
            match #fn_ident(__hanzo_params) {
                ::core::result::Result::Ok(__hanzo_output) => {
                    ::hanzo_tool::__private::ok_envelope(&__hanzo_output, __hanzo_input.len())
                }
                ::core::result::Result::Err(__hanzo_error) => ::hanzo_tool::__private::error_envelope(
                    &::std::string::ToString::to_string(&__hanzo_error),
                ),
            }
        }
    } else {
        quote!(::hanzo_tool::__private::ok_envelope(&#fn_ident(__hanzo_params), __hanzo_input.len()))
    };

    let export = if in_binary_target() {
        quote!()
    } else {
        quote! {
            #(#cfgs)*
            #[cfg(target_family = "wasm")]
            const _: () = {
                #[unsafe(export_name = #name)]
                extern "C" fn __hanzo_export(ptr: i32, len: i32) -> i64 {
                    // SAFETY: per the exports ABI the host wrote the params at [ptr, ptr + len).
                    unsafe { ::hanzo_tool::__private::abi::call_export(&#def, ptr, len) }
                }
            };
        }
    };

    Ok(quote! {
        #func

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        #vis const #def: ::hanzo_tool::ToolDef = {
            fn __hanzo_dispatch(
                __hanzo_input: &[u8],
            ) -> ::core::result::Result<::hanzo_tool::Value, ::std::string::String> {
                let __hanzo_params: #input_ty = ::hanzo_tool::parse_params(__hanzo_input)?;
                #call
            }
            fn __hanzo_respond(__hanzo_input: &[u8]) -> ::std::vec::Vec<u8> {
                let __hanzo_params: #input_ty = match ::hanzo_tool::parse_params(__hanzo_input) {
                    ::core::result::Result::Ok(__hanzo_params) => __hanzo_params,
                    ::core::result::Result::Err(__hanzo_error) => {
                        return ::hanzo_tool::__private::error_envelope(&__hanzo_error);
                    }
                };
                #respond
            }
            ::hanzo_tool::ToolDef {
                name: #name,
                description: #description,
                input_schema: ::hanzo_tool::__private::input_schema::<#input_ty>,
                output_schema: ::hanzo_tool::__private::output_schema::<#output_ty>,
                dispatch: __hanzo_dispatch,
                respond: __hanzo_respond,
            }
        };

        #export
    })
}

/// Whether the code being expanded is compiled into an executable (Cargo sets `CARGO_BIN_NAME`
/// only for binary targets, in the environment of the rustc process running this macro).
///
/// There the WASM exports are left out. On wasm, rustc exports every `#[no_mangle]` /
/// `#[export_name]` symbol from executables too, so a WASI command built from the tools would
/// also export `hanzo_alloc`, and hosts (which classify modules by that export) would treat it
/// as an exports-ABI module instead of running its `_start`. This is also why the command's
/// `main.rs` compiles the tools as its own module rather than linking the library crate, whose
/// compiled code carries the exports.
fn in_binary_target() -> bool {
    std::env::var_os("CARGO_BIN_NAME").is_some()
}

/// Whether a return type is a `Result`: judged by name, since a proc macro sees no types;
/// aliases like `io::Result<T>` and `anyhow::Result<T>` share the last segment.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == "Result")
        }
        Type::Paren(inner) => is_result(&inner.elem),
        Type::Group(inner) => is_result(&inner.elem),
        _ => false,
    }
}

/// The doc comment as written: one leading space per line removed (the one `///` leaves),
/// blank lines kept, surrounding blank space trimmed.
fn doc_comment(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(meta) = &attr.meta
            && meta.path.is_ident("doc")
            && let Expr::Lit(ExprLit {
                lit: Lit::Str(text), ..
            }) = &meta.value
        {
            let text = text.value();
            // An empty `///` line is an empty string, which `lines()` would skip; it separates
            // paragraphs, so keep it.
            let text = if text.is_empty() { "\n".to_string() } else { text };
            for line in text.lines() {
                lines.push(line.strip_prefix(' ').unwrap_or(line).trim_end().to_string());
            }
        }
    }
    lines.join("\n").trim().to_string()
}

fn expand_export(input: TokenStream2) -> syn::Result<TokenStream2> {
    let paths = Punctuated::<Path, Token![,]>::parse_terminated.parse2(input)?;
    if paths.is_empty() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "export! needs at least one #[tool] function: hanzo_tool::export!(run, ...)",
        ));
    }

    let mut names: Vec<String> = Vec::new();
    let mut defs = Vec::new();
    for path in &paths {
        let last = path.segments.last().expect("a parsed path has a segment");
        if !last.arguments.is_none() {
            return Err(syn::Error::new_spanned(
                &last.arguments,
                "name the tool function without generic arguments",
            ));
        }
        let name = last.ident.unraw().to_string();
        if names.contains(&name) {
            return Err(syn::Error::new(
                path.span(),
                format!("tool `{name}` is listed twice; export names must be unique"),
            ));
        }
        let mut def = path.clone();
        def.segments.last_mut().expect("checked above").ident = def_ident(&name, last.ident.span());
        defs.push(def);
        names.push(name);
    }

    // The node calls `run` when the user names no function; answer it with the default tool
    // rather than a missing-export error.
    let run_alias = if names.iter().any(|n| n == "run") {
        quote!()
    } else {
        quote! {
            #[unsafe(export_name = "run")]
            extern "C" fn __hanzo_run(ptr: i32, len: i32) -> i64 {
                // SAFETY: per the exports ABI the host wrote the params at [ptr, ptr + len).
                unsafe { ::hanzo_tool::__private::abi::call_export(__HANZO_TOOLS[0], ptr, len) }
            }
        }
    };
    // `hanzo_alloc` / `hanzo_free` (and natively `execute_tool` / `hanzo_free_result`) are
    // emitted here, in the tool crate, rather than defined `#[no_mangle]` in hanzo-tool: see
    // `in_binary_target` for why a dependency must not carry them.
    let exports = if in_binary_target() {
        quote!()
    } else {
        quote! {
            #[cfg(target_family = "wasm")]
            const _: () = {
                #[unsafe(export_name = "hanzo_alloc")]
                extern "C" fn __hanzo_alloc(len: i32) -> i32 {
                    ::hanzo_tool::__private::abi::alloc_buffer(len)
                }

                #[unsafe(export_name = "hanzo_free")]
                unsafe extern "C" fn __hanzo_free(ptr: i32, len: i32) {
                    // SAFETY: the exports ABI has the host free only buffers this module
                    // handed out, once each.
                    unsafe { ::hanzo_tool::__private::abi::free_buffer(ptr, len) }
                }

                #[unsafe(export_name = "hanzo_schema")]
                extern "C" fn __hanzo_schema() -> i64 {
                    ::hanzo_tool::__private::abi::schema_export(__HANZO_TOOLS)
                }

                #run_alias
            };

            // Natively the cdylib is a shared library for the node's `native` runtime: the
            // seed's `execute_tool` symbol, which takes no function name and so dispatches on
            // `HANZO_FUNCTION`, and the matching free.
            #[cfg(not(target_family = "wasm"))]
            const _: () = {
                #[unsafe(export_name = "execute_tool")]
                unsafe extern "C" fn __hanzo_execute_tool(
                    params_ptr: *const u8,
                    params_len: usize,
                ) -> *mut ::core::ffi::c_char {
                    // SAFETY: per the native ABI the host passes params_len readable bytes.
                    unsafe {
                        ::hanzo_tool::__private::native::execute_tool(__HANZO_TOOLS, params_ptr, params_len)
                    }
                }

                #[unsafe(export_name = "hanzo_free_result")]
                unsafe extern "C" fn __hanzo_free_result(ptr: *mut ::core::ffi::c_char) {
                    // SAFETY: per the native ABI the host frees only what execute_tool
                    // returned, once.
                    unsafe { ::hanzo_tool::__private::native::free_result(ptr) }
                }
            };
        }
    };

    Ok(quote! {
        #[doc(hidden)]
        static __HANZO_TOOLS: &[&::hanzo_tool::ToolDef] = &[#(&#defs),*];

        /// The tools this crate exports, in `export!` order; the first is the default.
        pub fn hanzo_tools() -> &'static [&'static ::hanzo_tool::ToolDef] {
            __HANZO_TOOLS
        }

        /// Runs the stdio contract for this crate's tools and exits: params JSON on stdin,
        /// the function named by `HANZO_FUNCTION` (default: `run`, else the first tool), the
        /// output JSON on stdout with exit code 0, or `{"error": ..}` with exit code 1.
        pub fn hanzo_main() -> ! {
            ::hanzo_tool::__private::stdio_main(hanzo_tools())
        }

        #exports
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn tool_error(item: TokenStream2) -> String {
        expand_tool(TokenStream2::new(), item)
            .expect_err("expected a compile error")
            .to_string()
    }

    fn export_error(input: TokenStream2) -> String {
        expand_export(input)
            .expect_err("expected a compile error")
            .to_string()
    }

    #[test]
    fn recognises_fallible_return_types() {
        let result = |ty: Type| is_result(&ty);
        assert!(result(parse_quote!(Result<Out, String>)));
        assert!(result(parse_quote!(std::io::Result<Out>)));
        assert!(result(parse_quote!(::anyhow::Result<Out>)));
        assert!(result(parse_quote!((Result<Out, String>))));
        assert!(!result(parse_quote!(Out)));
        assert!(!result(parse_quote!(Option<Out>)));
        assert!(!result(parse_quote!(Vec<Result<Out, String>>)));
        assert!(!result(parse_quote!(<T as Trait>::Result)));
    }

    #[test]
    fn doc_comment_keeps_paragraphs() {
        let item: ItemFn = parse_quote! {
            /// First line.
            /// Second line.
            ///
            ///   Indented code.
            #[inline]
            fn f(x: u8) -> u8 { x }
        };
        assert_eq!(
            doc_comment(&item.attrs),
            "First line.\nSecond line.\n\n  Indented code."
        );
        let bare: ItemFn = parse_quote!(
            fn g(x: u8) -> u8 {
                x
            }
        );
        assert_eq!(doc_comment(&bare.attrs), "");
    }

    #[test]
    fn expansion_names_the_export_and_definition() {
        let out = expand_tool(
            TokenStream2::new(),
            quote! {
                /// Adds one.
                pub fn r#add_one(x: u64) -> u64 { x + 1 }
            },
        )
        .unwrap()
        .to_string();
        assert!(out.contains("const __hanzo_tool_add_one"), "{out}");
        assert!(out.contains("name : \"add_one\""), "{out}");
        assert!(out.contains("description : \"Adds one.\""), "{out}");
        // The export is gated in the generated code, not decided on the build host.
        if !in_binary_target() {
            assert!(out.contains("export_name = \"add_one\""), "{out}");
            assert!(out.contains("target_family = \"wasm\""), "{out}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_a_tool() {
        assert!(
            tool_error(quote!(
                async fn f(x: u8) -> u8 {
                    x
                }
            ))
            .contains("synchronous")
        );
        assert!(
            tool_error(quote!(
                unsafe fn f(x: u8) -> u8 {
                    x
                }
            ))
            .contains("unsafe")
        );
        assert!(
            tool_error(quote!(
                extern "C" fn f(x: u8) -> u8 {
                    x
                }
            ))
            .contains("extern")
        );
        assert!(
            tool_error(quote!(
                fn f<T>(x: T) -> u8 {
                    0
                }
            ))
            .contains("generic")
        );
        assert!(
            tool_error(quote!(
                fn f() -> u8 {
                    0
                }
            ))
            .contains("exactly one argument")
        );
        assert!(
            tool_error(quote!(
                fn f(a: u8, b: u8) -> u8 {
                    a + b
                }
            ))
            .contains("exactly one")
        );
        assert!(
            tool_error(quote!(
                fn f(&self) -> u8 {
                    0
                }
            ))
            .contains("not a method")
        );
        assert!(
            tool_error(quote!(
                fn malloc(n: u8) -> u8 {
                    n
                }
            ))
            .contains("reserved")
        );
        assert!(
            tool_error(quote!(
                fn hanzo_alloc(n: u8) -> u8 {
                    n
                }
            ))
            .contains("reserved")
        );
        let with_args = expand_tool(
            quote!(name = "x"),
            quote!(
                fn f(x: u8) -> u8 {
                    x
                }
            ),
        );
        assert!(with_args.unwrap_err().to_string().contains("no arguments"));
    }

    #[test]
    fn export_lists_definitions_in_order() {
        let out = expand_export(quote!(first, tools::second, r#third))
            .unwrap()
            .to_string();
        let defs = "& [& __hanzo_tool_first , & tools :: __hanzo_tool_second , & __hanzo_tool_third]";
        assert!(out.contains(defs), "{out}");
        assert!(out.contains("pub fn hanzo_main"), "{out}");
        if !in_binary_target() {
            // No tool is called `run`: the default one answers it.
            assert!(out.contains("export_name = \"run\""), "{out}");
            assert!(out.contains("export_name = \"hanzo_alloc\""), "{out}");
            assert!(out.contains("export_name = \"hanzo_free\""), "{out}");
            assert!(out.contains("export_name = \"hanzo_schema\""), "{out}");
            // Natively: the seed's symbol and its free, gated in the generated code.
            assert!(out.contains("export_name = \"execute_tool\""), "{out}");
            assert!(out.contains("export_name = \"hanzo_free_result\""), "{out}");
            assert!(out.contains("not (target_family = \"wasm\")"), "{out}");
        }
        let with_run = expand_export(quote!(other, run)).unwrap().to_string();
        assert!(!with_run.contains("export_name = \"run\""), "{with_run}");
    }

    #[test]
    fn export_rejects_empty_and_duplicate_lists() {
        assert!(export_error(quote!()).contains("at least one"));
        assert!(export_error(quote!(a, b, a)).contains("listed twice"));
        assert!(export_error(quote!(a, m::r#a)).contains("listed twice"));
        assert!(export_error(quote!(a<u8>)).contains("generic"));
        assert!(export_error(quote!(1)).contains("expected identifier"));
    }
}

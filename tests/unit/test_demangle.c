/* test_demangle.c - Rust symbols named as rustfilt prints them (issue 20):
 * legacy manglings without their hash, v0 without crate disambiguators.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "symbolize.h"

static void expect_name(const char *mangled, const char *want)
{
    char *got = sym_demangle_rust(mangled);
    cr_assert_not_null(got, "%s not demangled", mangled);
    cr_expect_str_eq(got, want, "%s", mangled);
    free(got);
}

Test(demangle, legacy_drops_hash_and_escapes)
{
    expect_name("_ZN13tokio_service11load_report17h40790f476d225a4bE", "tokio_service::load_report");
    expect_name("_ZN5tokio7runtime4task4core17Core$LT$T$C$S$GT$4poll17h7fc1287e83be7e6bE",
                "tokio::runtime::task::core::Core<T,S>::poll");
    expect_name("_ZN13tokio_service5serve28_$u7b$$u7b$closure$u7d$$u7d$17hbd29b913e97231e0E",
                "tokio_service::serve::{{closure}}");
}

Test(demangle, legacy_llvm_suffix)
{
    expect_name("_ZN13tokio_service5serve28_$u7b$$u7b$closure$u7d$$u7d$17hbd29b913e97231e0E"
                ".llvm.7120951085117618760",
                "tokio_service::serve::{{closure}}");
}

Test(demangle, v0_drops_disambiguators)
{
    expect_name("_RNvNtNtCsjrHSEGnQ3l9_3std6thread9functions5sleep", "std::thread::functions::sleep");
    expect_name("_RNvMNtNtNtNtCsjrHSEGnQ3l9_3std3sys4sync7condvar5futexNtB2_7Condvar4wait",
                "<std::sys::sync::condvar::futex::Condvar>::wait");
}

Test(demangle, not_rust)
{
    cr_expect_null(sym_demangle_rust("_ZNSt6vectorIiSaIiEE9push_backERKi"));
    cr_expect_null(sym_demangle_rust("_ZN3foo3barEv"));
    cr_expect_null(sym_demangle_rust("clock_nanosleep"));
    cr_expect_null(sym_demangle_rust("_R"));
}

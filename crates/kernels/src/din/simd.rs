//! Run-time dispatch to AVX2 + FMA code paths.
/// Defines `$name` to run `$body` (an `#[inline(always)]` fn of the same signature) compiled for
/// AVX2 + FMA when the CPU has them (checked at run time, cached by std), else as is: the
/// element-wise loops then vectorize 8 wide instead of SSE2's 4.
macro_rules! avx2_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        avx2_dispatch!(@emit $(#[$doc])* $vis fn $name($($arg: $ty),*) => [$body] [$body]);
    };
    // `$body::<FMA>` generic over whether fused multiply-adds exist: `true` in the AVX2 + FMA
    // build, `false` in the other, where `f32::mul_add` would be a slow libm call.
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident::<FMA>) => {
        avx2_dispatch!(@emit $(#[$doc])* $vis fn $name($($arg: $ty),*) => [$body::<true>] [$body::<false>]);
    };
    // The one definition both forms share: `$fast` called in the AVX2 + FMA build, `$slow` else.
    (@emit $(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => [$($fast:tt)*] [$($slow:tt)*]) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    $($fast)*($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $($slow)*($($arg),*)
        }
    };
}

pub(crate) use avx2_dispatch;


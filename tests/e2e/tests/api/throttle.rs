//! The credential throttle against real Redis: distinct wrong credentials are counted until
//! 429; the same wrong credentials again are no new guess and count once per window.

use plantline_e2e::TestContext;
use platform::ApiError;
use storage::throttle::LoginThrottle;

fn refused() -> Result<(), ApiError> {
    Err(ApiError::unauthorized("invalid client credentials"))
}

#[tokio::test]
async fn the_same_wrong_credentials_count_once_and_distinct_ones_lock_the_account() {
    let ctx = TestContext::new().await;
    let throttle = LoginThrottle::new(ctx.redis(), &ctx.settings.auth);
    let limit = ctx.settings.auth.login_max_failures_per_user;
    let status = |outcome: Result<(), ApiError>| outcome.err().map(|e| e.status().as_u16());

    // A client stuck on an old secret: many refusals, one failure counted.
    for _ in 0..3 * limit {
        let outcome = throttle
            .run_counted_once("gateway:line-1", "10.0.0.1", "old-pair", async {
                refused()
            })
            .await;
        assert_eq!(status(outcome), Some(401));
    }
    let current = throttle
        .run_counted_once("gateway:line-1", "10.0.0.1", "new-pair", async { Ok(()) })
        .await;
    assert_eq!(
        status(current),
        None,
        "the current secret is not locked out"
    );

    // Guesses: distinct credentials each count, and the account locks.
    let mut answers = Vec::new();
    for guess in 0..limit + 2 {
        let outcome = throttle
            .run_counted_once(
                "gateway:line-2",
                "10.0.0.2",
                &format!("guess-{guess}"),
                async { refused() },
            )
            .await;
        answers.push(status(outcome));
    }
    assert_eq!(answers.last(), Some(&Some(429)), "{answers:?}");
    assert_eq!(
        answers.iter().filter(|a| **a == Some(401)).count(),
        limit as usize,
        "{answers:?}"
    );
}

//! Auth figures: token verification per request (in-process, the exact code every service
//! runs) against a bare Ed25519 signature check, and login latency through nginx against the
//! bare argon2id verification every login must do.

use crate::Target;
use crate::report::{Report, Row, progress};
use crate::stats::Samples;
use domain::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{AccessClaims, RevocationCache, SigningKey, TokenVerifier};
use std::time::{Duration, Instant};

const VERIFICATIONS: u32 = 20_000;
const LOGINS: usize = 40;

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub async fn run(target: &Target, report: &mut Report) -> Result<(), String> {
    verification(report)?;
    login(target, report).await?;
    burst(target, report).await
}

/// Logins sent at once by the burst, and how long auth then idles before its RSS is read.
const BURST: usize = 128;
const IDLE_AFTER_BURST: Duration = Duration::from_secs(10);

/// auth's resident memory after `BURST` concurrent logins and a quiet spell: each argon2id
/// check takes 19 MiB, which must not stay with the process once the burst is over.
async fn burst(target: &Target, report: &mut Report) -> Result<(), String> {
    let body = serde_json::json!({
        "username": target.env("OPERATOR_USER")?,
        "password": target.env("OPERATOR_PASSWORD")?,
    });
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/auth/login", target.base_url);
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let request = http.post(&url).json(&body).send();
        logins.spawn(async move { request.await.map(|r| r.status().as_u16()) });
    }
    let statuses: Vec<_> = logins.join_all().await;
    let served = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    // Beyond the hashing queue auth answers 503 at once, and the login throttle 429 to one
    // address asking too often, by design; anything else is a fault.
    if let Some(other) = statuses.iter().find(|s| !matches!(s, Ok(200 | 429 | 503))) {
        return Err(format!("a login of the burst answered {other:?}"));
    }
    tokio::time::sleep(IDLE_AFTER_BURST).await;
    let Some(kib) = crate::report::current_rss_kib("auth") else {
        return Ok(());
    };
    let mib = kib as f64 / 1024.0;
    report.add(Row {
        figure: format!(
            "auth RSS {} s after {BURST} concurrent logins",
            IDLE_AFTER_BURST.as_secs()
        ),
        value: format!("{mib:.1} MiB"),
        baseline: "48 MiB budget".to_owned(),
        ratio: Some(mib / 48.0),
        note: format!("{served} served, the rest refused (queue full or throttled); VmRSS"),
    });
    Ok(())
}

fn verification(report: &mut Report) -> Result<(), String> {
    let key = SigningKey::generate();
    let claims = operator_claims(chrono_now());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.public_key().kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_der(key.to_pkcs8_der()),
    )
    .map_err(|e| e.to_string())?;
    let verifier = TokenVerifier::new(
        std::slice::from_ref(key.public_key()),
        "plantline",
        "plantline-api",
        30,
        RevocationCache::new(Duration::from_secs(3)),
    )
    .map_err(|e| e.to_string())?;
    let (signing_input, signature, public) = bare_signature(&token, &key)?;

    // Distinct tokens (first sight of each: full signature check) and one token repeated (a
    // gateway's steady state: the verified-token cache answers).
    let mint = |jti: String| {
        jsonwebtoken::encode(
            &header,
            &AccessClaims {
                jti,
                ..claims.clone()
            },
            &EncodingKey::from_ed_der(key.to_pkcs8_der()),
        )
    };
    let distinct = (0..VERIFICATIONS)
        .map(|_| mint(uuid::Uuid::new_v4().to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;

    let bar = progress(u64::from(VERIFICATIONS) * 3, "token verification");
    let baseline = time_bare_signature(signing_input, &signature, &public)?;
    bar.inc(u64::from(VERIFICATIONS));
    let first_sight = verify_all(&verifier, &mut distinct.iter())?;
    bar.inc(u64::from(VERIFICATIONS));
    let repeated = verify_all(
        &verifier,
        &mut std::iter::repeat_n(&token, VERIFICATIONS as usize),
    )?;
    bar.finish_and_clear();
    add_verification_rows(report, first_sight, repeated, baseline);
    Ok(())
}

/// An operator's access token claims, valid for 15 minutes from `now`.
fn operator_claims(now: i64) -> AccessClaims {
    AccessClaims {
        sub: uuid::Uuid::new_v4().to_string(),
        username: "operator".to_owned(),
        role: "operator".to_owned(),
        permissions: Role::Operator
            .permissions()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        iss: "plantline".to_owned(),
        aud: "plantline-api".to_owned(),
        iat: now,
        nbf: now,
        exp: now + 900,
        jti: uuid::Uuid::new_v4().to_string(),
        sid: Some(uuid::Uuid::new_v4().to_string()),
    }
}

/// The baseline's inputs: `token`'s signing input and signature, and the key to check them
/// with, so the bare Ed25519 check runs on exactly what the verifier sees.
fn bare_signature<'a>(
    token: &'a str,
    key: &SigningKey,
) -> Result<
    (
        &'a str,
        ed25519_dalek::Signature,
        ed25519_dalek::VerifyingKey,
    ),
    String,
> {
    let (signing_input, signature_b64) = token.rsplit_once('.').ok_or("token shape")?;
    let signature =
        ed25519_dalek::Signature::from_slice(&decode(signature_b64)?).map_err(|e| e.to_string())?;
    let public = ed25519_dalek::VerifyingKey::from_bytes(
        &decode(&key.public_key().x())?
            .try_into()
            .map_err(|_| "key length")?,
    )
    .map_err(|e| e.to_string())?;
    Ok((signing_input, signature, public))
}

/// Mean time of one bare Ed25519 check.
fn time_bare_signature(
    signing_input: &str,
    signature: &ed25519_dalek::Signature,
    public: &ed25519_dalek::VerifyingKey,
) -> Result<Duration, String> {
    let started = Instant::now();
    for _ in 0..VERIFICATIONS {
        public
            .verify_strict(signing_input.as_bytes(), signature)
            .map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed() / VERIFICATIONS)
}

/// Mean time of one verification as every request does it.
fn verify_all(
    verifier: &TokenVerifier,
    tokens: &mut dyn Iterator<Item = &String>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut count = 0u32;
    for token in tokens {
        let principal = verifier.verify(token).map_err(|e| e.to_string())?;
        // The revocation lookup every request also does.
        let _ = verifier.check_revocation(&principal);
        count += 1;
    }
    Ok(started.elapsed() / count.max(1))
}

fn add_verification_rows(
    report: &mut Report,
    first_sight: Duration,
    repeated: Duration,
    baseline: Duration,
) {
    report.add(Row {
        figure: "token verification, first sight (in-process)".to_owned(),
        value: micros(first_sight),
        baseline: format!("{} Ed25519 alone", micros(baseline)),
        ratio: Some(first_sight.as_secs_f64() / baseline.as_secs_f64()),
        note: "parse + signature + claims + revocation lookup".to_owned(),
    });
    report.add(Row {
        figure: "token verification, same token again".to_owned(),
        value: micros(repeated),
        baseline: format!("{} Ed25519 alone", micros(baseline)),
        ratio: Some(repeated.as_secs_f64() / baseline.as_secs_f64()),
        note: "verified-token cache; what a gateway's batches cost".to_owned(),
    });
}

async fn login(target: &Target, report: &mut Report) -> Result<(), String> {
    let username = target
        .demo_env
        .get("OPERATOR_USER")
        .ok_or("OPERATOR_USER missing")?;
    let password = target
        .demo_env
        .get("OPERATOR_PASSWORD")
        .ok_or("OPERATOR_PASSWORD missing")?;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/auth/login", target.base_url);
    let body = serde_json::json!({"username": username, "password": password});

    // Baseline: one argon2id verification with the production parameters, in-process.
    let hash = storage::secrets::hash_secret(&secrecy::SecretString::from(password.clone()))
        .map_err(|e| e.to_string())?;
    let bar = progress(LOGINS as u64 * 2, "login latency");
    let mut argon = Vec::with_capacity(LOGINS);
    for _ in 0..LOGINS {
        let started = Instant::now();
        let ok =
            storage::secrets::verify_secret(&secrecy::SecretString::from(password.clone()), &hash);
        argon.push(started.elapsed());
        if !ok {
            return Err("argon2 baseline did not verify".to_owned());
        }
        bar.inc(1);
    }
    // Warm the connection pool and the services once.
    http.post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut logins = Vec::with_capacity(LOGINS);
    for _ in 0..LOGINS {
        let started = Instant::now();
        let response = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        response.bytes().await.map_err(|e| e.to_string())?;
        logins.push(started.elapsed());
        if status != 200 {
            return Err(format!("login answered {status}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (argon, logins) = (Samples::new(argon), Samples::new(logins));
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        report.add(Row {
            figure: format!("login through nginx, {label}"),
            value: millis(logins.quantile(q)),
            baseline: format!("{} argon2id alone", millis(argon.quantile(q))),
            ratio: Some(logins.quantile(q).as_secs_f64() / argon.quantile(q).as_secs_f64()),
            note: "argon2id (19 MiB, t=2) dominates by design".to_owned(),
        });
    }
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// base64url without padding, as JWTs use.
fn decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| e.to_string())
}

//! Kafka client settings: the input consumer (manual assignment, read_committed,
//! no auto-commit) and one transactional producer per owned partition, whose
//! transactional id fences any other worker that still writes for it. Every client
//! gets the pipeline's TLS/SASL settings ([`KafkaSecurity`]).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use riskpipe_crds::KafkaSource;

use crate::secrets::{SecretValue, SecretsDir};

/// The manifest field that names the security Secret.
const SECURITY_FIELD: &str = "spec.source.kafka.securitySecretRef";

/// Property prefixes a security Secret may set.
const ALLOWED_PREFIXES: [&str; 3] = ["security.", "sasl.", "ssl."];

/// Properties refused although their prefix is allowed: they make librdkafka run a
/// command or load a shared library named by the Secret.
const REFUSED: [&str; 2] = ["sasl.kerberos.kinit.cmd", "ssl.engine.location"];

/// TLS/SASL properties of every Kafka client of the worker, from the Secret that
/// `spec.source.kafka.securitySecretRef` names: each key is a librdkafka property
/// (`security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
/// `ssl.ca.pem`, …) and its file content, trailing line end trimmed, the value.
/// `Debug` shows the property names only.
#[derive(Clone, Default)]
pub struct KafkaSecurity {
    secret: Option<String>,
    props: Vec<(String, SecretValue)>,
}

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field(
                "properties",
                &self.props.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KafkaSecurity {
    /// No security settings (plaintext, as without `securitySecretRef`).
    pub fn none() -> Self {
        KafkaSecurity::default()
    }

    /// The settings of `source`: empty without `securitySecretRef`, else every key of
    /// the mounted Secret, checked (only `security.`, `sasl.`, `ssl.` properties;
    /// values UTF-8 without NUL). Errors name the Secret, key and folder, never a value.
    pub fn load(source: &KafkaSource, secrets: &SecretsDir) -> Result<Self> {
        let Some(secret) = &source.security_secret_ref else {
            return Ok(Self::none());
        };
        let folder = secrets.secret(secret, SECURITY_FIELD)?;
        let entries = folder.entries()?;
        if entries.is_empty() {
            bail!(
                "{SECURITY_FIELD}: Secret '{}' (folder {}) has no keys; expected librdkafka \
                 properties such as security.protocol",
                folder.name(),
                folder.path().display()
            );
        }
        let mut props = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            check_property(&key).with_context(|| {
                format!(
                    "{SECURITY_FIELD}: key '{key}' of Secret '{}' (folder {})",
                    folder.name(),
                    folder.path().display()
                )
            })?;
            let what = format!(
                "{SECURITY_FIELD}: key '{key}' of Secret '{}'",
                folder.name()
            );
            let text = value.trimmed_str(&what)?;
            if text.contains('\0') {
                bail!("{what} contains a NUL byte");
            }
            let trimmed = SecretValue::new(text.as_bytes().to_vec());
            props.push((key, trimmed));
        }
        Ok(KafkaSecurity {
            secret: Some(folder.name().to_owned()),
            props,
        })
    }

    /// Properties from name/value pairs (tests and tools), checked as in
    /// [`KafkaSecurity::load`].
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut props = Vec::new();
        for (k, v) in pairs {
            check_property(k)?;
            props.push((k.to_owned(), SecretValue::new(v.as_bytes().to_vec())));
        }
        Ok(KafkaSecurity {
            secret: None,
            props,
        })
    }

    /// Whether there are no settings (plaintext).
    pub fn is_empty(&self) -> bool {
        self.props.is_empty()
    }

    /// The property names (for logs).
    pub fn property_names(&self) -> impl Iterator<Item = &str> {
        self.props.iter().map(|(k, _)| k.as_str())
    }

    /// Sets every property on `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        for (k, v) in &self.props {
            // Checked to be UTF-8 when loaded.
            config.set(k, String::from_utf8_lossy(v.expose()).into_owned());
        }
    }
}

/// Connects once with the pipeline's settings and fails at once, naming the cause,
/// when the broker refuses them: SASL authentication or the TLS handshake (librdkafka
/// would otherwise retry them forever as transport failures). Returns `Ok` as soon
/// as the topic's metadata is read, and also after `deadline` without either (a
/// broker that is down is the normal start path's business: it retries).
pub fn check_access(
    source: &KafkaSource,
    security: &KafkaSecurity,
    deadline: Duration,
) -> Result<()> {
    let producer: BaseProducer<AccessProbe> = base_config(source, security)
        .create_with_context(AccessProbe::default())
        .context("creating a Kafka client to check the TLS/SASL settings")?;
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if producer
            .client()
            .fetch_metadata(Some(&source.topic), Duration::from_millis(500))
            .is_ok()
        {
            return Ok(());
        }
        producer.poll(Duration::from_millis(100));
        let refused = producer
            .context()
            .refused
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        if let Some(reason) = refused {
            let settings = match &security.secret {
                Some(name) => {
                    format!("the TLS/SASL settings of Secret '{name}' ({SECURITY_FIELD})")
                }
                None => "the client's TLS/SASL settings".to_owned(),
            };
            bail!(
                "Kafka at {} refused {settings}: {reason}",
                source.bootstrap_servers
            );
        }
    }
    Ok(())
}

/// Records the first authentication or TLS error a client reports.
#[derive(Default)]
struct AccessProbe {
    refused: Mutex<Option<String>>,
}

impl ClientContext for AccessProbe {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        let fatal = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::SSL
            )
        );
        if fatal && let Ok(mut slot) = self.refused.lock() {
            slot.get_or_insert_with(|| format!("{error}: {reason}"));
        }
    }
}

impl ProducerContext for AccessProbe {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

fn check_property(key: &str) -> Result<()> {
    if !ALLOWED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        bail!(
            "'{key}' is not a TLS/SASL property: only librdkafka properties starting with \
             security., sasl. or ssl. are accepted (e.g. security.protocol, sasl.mechanism, \
             sasl.username, sasl.password, ssl.ca.pem)"
        );
    }
    if REFUSED.contains(&key) {
        bail!("'{key}' is refused: it makes the Kafka client run a command or load a library");
    }
    Ok(())
}

/// Settings shared by every client of the pipeline, including its TLS/SASL settings.
pub fn base_config(source: &KafkaSource, security: &KafkaSecurity) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &source.bootstrap_servers)
        .set("client.id", "riskpipe-worker")
        .set_log_level(RDKafkaLogLevel::Warning);
    security.apply(&mut c);
    c
}

/// The input consumer.
pub fn consumer_config(
    source: &KafkaSource,
    group_id: &str,
    security: &KafkaSecurity,
) -> ClientConfig {
    let mut c = base_config(source, security);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        // Every partition is assigned an explicit offset; one that retention has
        // removed is an error the worker handles (onOffsetOutOfRange), never a
        // silent jump.
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "5")
        .set("queued.min.messages", "20000")
        // Bounds the prefetched input (with one cycle held by the loop, the
        // worker's memory stays bounded whatever the input rate).
        .set("queued.max.messages.kbytes", "32768");
    c
}

/// The transactional producer of one input partition.
pub fn producer_config(
    source: &KafkaSource,
    transactional_id: &str,
    security: &KafkaSecurity,
) -> ClientConfig {
    let mut c = base_config(source, security);
    c.set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("retry.backoff.ms", "10")
        .set("retry.backoff.max.ms", "50")
        .set("compression.type", "lz4")
        .set("transaction.timeout.ms", "60000")
        .set("queue.buffering.max.messages", "200000");
    c
}

/// Timeout of the transactional producers' calls.
pub const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Retries a broker call for up to 60 s: right after a crash or a broker
/// restart the group and transaction coordinators may answer late.
pub fn retry<T>(what: &str, mut call: impl FnMut() -> rdkafka::error::KafkaResult<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "{what}: retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e).context(format!("{what} (gave up after 60 s)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskpipe_crds::SecretRef;

    fn source_with(secret: Option<&str>) -> KafkaSource {
        KafkaSource {
            security_secret_ref: secret.map(|n| SecretRef { name: n.into() }),
            ..KafkaSource::default()
        }
    }

    fn secret_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("kafka-client");
        std::fs::create_dir_all(&folder).unwrap();
        for (k, v) in files {
            std::fs::write(folder.join(k), v).unwrap();
        }
        tmp
    }

    #[test]
    fn loads_and_applies_properties_to_consumer_and_producer() {
        let tmp = secret_dir(&[
            ("security.protocol", "SASL_SSL\n"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "s3cret-pw\r\n"),
            (
                "ssl.ca.pem",
                "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
            ),
        ]);
        let source = source_with(Some("kafka-client"));
        let sec = KafkaSecurity::load(&source, &SecretsDir::new(tmp.path())).unwrap();
        for c in [
            consumer_config(&source, "g", &sec),
            producer_config(&source, "t", &sec),
        ] {
            assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(c.get("sasl.password"), Some("s3cret-pw"));
            assert_eq!(
                c.get("ssl.ca.pem"),
                Some("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----")
            );
            assert_eq!(c.get("bootstrap.servers"), Some("localhost:9092"));
        }
        let shown = format!("{sec:?}");
        assert!(
            shown.contains("sasl.password") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn no_secret_ref_means_no_properties() {
        let tmp = tempfile::tempdir().unwrap();
        let sec = KafkaSecurity::load(&source_with(None), &SecretsDir::new(tmp.path())).unwrap();
        assert_eq!(sec.property_names().count(), 0);
        assert_eq!(
            consumer_config(&source_with(None), "g", &sec).get("security.protocol"),
            None
        );
    }

    #[test]
    fn refuses_other_properties_naming_key_and_secret() {
        for bad in ["bootstrap.servers", "client.id", "sasl.kerberos.kinit.cmd"] {
            let tmp = secret_dir(&[("security.protocol", "SSL"), (bad, "x")]);
            let err = KafkaSecurity::load(
                &source_with(Some("kafka-client")),
                &SecretsDir::new(tmp.path()),
            )
            .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(&format!("key '{bad}'")), "{msg}");
            assert!(msg.contains("Secret 'kafka-client'"), "{msg}");
        }
    }

    #[test]
    fn missing_or_empty_secret_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let msg = format!(
            "{:#}",
            KafkaSecurity::load(&source_with(Some("nope")), &SecretsDir::new(tmp.path()))
                .unwrap_err()
        );
        assert!(
            msg.contains("securitySecretRef") && msg.contains("'nope'"),
            "{msg}"
        );
        let tmp = secret_dir(&[]);
        let msg = format!(
            "{:#}",
            KafkaSecurity::load(
                &source_with(Some("kafka-client")),
                &SecretsDir::new(tmp.path())
            )
            .unwrap_err()
        );
        assert!(msg.contains("has no keys"), "{msg}");
    }
}

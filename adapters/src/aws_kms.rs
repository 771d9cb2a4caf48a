//! `aws-kms:KEY_ID_OR_ALIAS` key providers: the data key comes from AWS KMS (GenerateDataKey), is
//! opened with Decrypt and rotated with ReEncrypt (the data key never leaves KMS then). The backup
//! id is bound as the encryption context `drover:backup_id`. Configuration is the AWS SDK's own:
//! the standard credential chain and profiles, `AWS_REGION`, and `AWS_ENDPOINT_URL` for VPC
//! endpoints and tests.

use crate::backup::{DataKey, Envelope, KeyError, KeyProvider, WrapContext};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;

/// A KMS key named by id, ARN or alias.
#[derive(Debug, Clone)]
pub struct KmsKeyProvider {
    key: String,
}

impl KmsKeyProvider {
    async fn describe(&self) -> Result<Option<aws_sdk_kms::types::KeyMetadata>, KeyError> {
        let out = Self::client()
            .await
            .describe_key()
            .key_id(&self.key)
            .send()
            .await
            .map_err(|e| self.error("DescribeKey", e))?;
        Ok(out.key_metadata)
    }

    /// The key's rotation: `GetKeyRotationStatus` (enabled, period), and the age of its current
    /// material from `DescribeKey`'s creation date and the latest of `ListKeyRotations`.
    ///
    /// # Errors
    /// The key cannot be described.
    pub async fn rotation(&self) -> Result<crate::backup::KeyRotation, KeyError> {
        let meta = self.describe().await?.ok_or_else(|| KeyError::Unreadable {
            uri: format!("aws-kms:{}", self.key),
            reason: "DescribeKey returned no metadata".into(),
        })?;
        let id = meta.key_id().to_owned();
        let created = meta
            .creation_date()
            .map_or(0, aws_sdk_kms::primitives::DateTime::secs);
        let c = Self::client().await;
        let status = c
            .get_key_rotation_status()
            .key_id(&id)
            .send()
            .await
            .map_err(|e| self.error("GetKeyRotationStatus", e))?;
        // Rotations made (automatic or on demand); not every store lists them.
        let latest = c
            .list_key_rotations()
            .key_id(&id)
            .send()
            .await
            .ok()
            .and_then(|r| {
                r.rotations()
                    .iter()
                    .filter_map(|x| {
                        x.rotation_date()
                            .map(aws_sdk_kms::primitives::DateTime::secs)
                    })
                    .max()
            })
            .unwrap_or(created);
        Ok(crate::backup::KeyRotation {
            key: format!("aws-kms:{}", self.key),
            material_since: latest.max(created),
            automatic: status.key_rotation_enabled(),
            period_days: status
                .rotation_period_in_days()
                .and_then(|d| u32::try_from(d).ok()),
        })
    }

    /// A provider for `key` (`alias/ehr-backup`, a key id or an ARN).
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into() }
    }

    async fn client() -> aws_sdk_kms::Client {
        let conf = crate::aws_common::backup_sdk_config().await;
        aws_sdk_kms::Client::new(&conf)
    }

    fn context(ctx: &WrapContext) -> HashMap<String, String> {
        HashMap::from([("drover:backup_id".to_owned(), hex::encode(ctx.backup_id))])
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        call: &str,
        e: aws_sdk_kms::error::SdkError<E>,
    ) -> KeyError {
        let code = e
            .as_service_error()
            .and_then(ProvideErrorMetadata::code)
            .unwrap_or("")
            .to_owned();
        let (c, m) = crate::aws_common::describe_sdk_error(&e);
        let msg = format!("KMS {call} on {}: {c}: {m}", self.key);
        match code.as_str() {
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                KeyError::Unwrap(format!("aws-kms:{}", self.key))
            }
            "NotFoundException"
            | "DisabledException"
            | "KMSInvalidStateException"
            | "AccessDeniedException" => KeyError::BadKey {
                uri: self.uri(),
                reason: msg,
            },
            _ => KeyError::Transient(msg),
        }
    }
}

/// An envelope holding a KMS ciphertext blob.
fn envelope(key_id: Option<&str>, default_key: &str, blob: Option<&Blob>) -> Envelope {
    Envelope {
        provider: "aws-kms".into(),
        key_id: key_id.unwrap_or(default_key).to_owned(),
        wrapped_key: hex::encode(blob.map(Blob::as_ref).unwrap_or_default()),
        nonce: None,
    }
}

fn key_bytes(b: &[u8], uri: &str) -> Result<DataKey, KeyError> {
    let bytes: [u8; 32] = b.try_into().map_err(|_| KeyError::BadKey {
        uri: uri.to_owned(),
        reason: "KMS returned a data key that is not 256 bits".into(),
    })?;
    Ok(DataKey::from_bytes(bytes))
}

#[async_trait::async_trait]
impl KeyProvider for KmsKeyProvider {
    fn uri(&self) -> String {
        format!("aws-kms:{}", self.key)
    }

    fn kms_key(&self) -> Option<&str> {
        Some(&self.key)
    }

    async fn key_id(&self) -> Result<String, KeyError> {
        let meta = self.describe().await?;
        Ok(meta.and_then(|m| m.arn).unwrap_or_else(|| self.key.clone()))
    }

    async fn preflight(&self) -> Result<(), KeyError> {
        match self.describe().await?.and_then(|m| m.key_state) {
            Some(aws_sdk_kms::types::KeyState::Enabled) => Ok(()),
            other => Err(KeyError::BadKey {
                uri: self.uri(),
                reason: format!("the key is not enabled (state {other:?})"),
            }),
        }
    }

    async fn generate(&self, ctx: &WrapContext) -> Result<(DataKey, Envelope), KeyError> {
        let out = Self::client()
            .await
            .generate_data_key()
            .key_id(&self.key)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| self.error("GenerateDataKey", e))?;
        let plain = out.plaintext().map(Blob::as_ref).unwrap_or_default();
        let key = key_bytes(plain, &self.uri())?;
        Ok((
            key,
            envelope(out.key_id(), &self.key, out.ciphertext_blob()),
        ))
    }

    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<Envelope, KeyError> {
        let out = Self::client()
            .await
            .encrypt()
            .key_id(&self.key)
            .plaintext(Blob::new(key.as_bytes().to_vec()))
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| self.error("Encrypt", e))?;
        Ok(envelope(out.key_id(), &self.key, out.ciphertext_blob()))
    }

    async fn unwrap(&self, env: &Envelope, ctx: &WrapContext) -> Result<DataKey, KeyError> {
        if env.provider != "aws-kms" {
            return Err(KeyError::WrongProvider {
                expected: "aws-kms".into(),
                found: env.provider.clone(),
            });
        }
        let blob = hex::decode(&env.wrapped_key).map_err(|_| KeyError::Unwrap(self.uri()))?;
        let out = Self::client()
            .await
            .decrypt()
            .key_id(&self.key)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| self.error("Decrypt", e))?;
        key_bytes(
            out.plaintext().map(Blob::as_ref).unwrap_or_default(),
            &self.uri(),
        )
    }

    async fn rewrap(
        &self,
        env: &Envelope,
        ctx: &WrapContext,
        to: &dyn KeyProvider,
    ) -> Result<Envelope, KeyError> {
        let Some(dest) = to.kms_key() else {
            return crate::backup::rewrap_via_data_key(self, env, ctx, to).await;
        };
        let blob = hex::decode(&env.wrapped_key).map_err(|_| KeyError::Unwrap(self.uri()))?;
        let out = Self::client()
            .await
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .source_key_id(&self.key)
            .set_source_encryption_context(Some(Self::context(ctx)))
            .destination_key_id(dest)
            .set_destination_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| self.error("ReEncrypt", e))?;
        Ok(envelope(out.key_id(), dest, out.ciphertext_blob()))
    }
}

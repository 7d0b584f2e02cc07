//! The test-side RFC 8291 decryptor against the RFC's own example, then
//! against the sender's encryption.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use palaver_push::testing::decrypt_aes128gcm;

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[test]
fn decrypts_the_rfc_8291_example() {
    // RFC 8291 section 5 and appendix A.
    let message = b64(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );
    let ua_private = p256::SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
    assert_eq!(
        ua_private.public_key().to_encoded_point(false).as_bytes(),
        b64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4").as_slice()
    );
    let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
    let plaintext = decrypt_aes128gcm(&message, &ua_private, &auth).unwrap();
    assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");

    // A wrong auth secret or a flipped bit must not decrypt.
    assert!(decrypt_aes128gcm(&message, &ua_private, &[0u8; 16]).is_err());
    let mut tampered = message.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(decrypt_aes128gcm(&tampered, &ua_private, &auth).is_err());
}

#[test]
fn decrypts_what_the_sender_encrypts() {
    let ua = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let auth: [u8; 16] = rand::random();
    let body =
        web_push_native::encrypt(b"{\"hello\":1}".to_vec(), &ua.public_key(), &web_push_native::Auth::from(auth))
            .unwrap();
    assert_eq!(decrypt_aes128gcm(&body, &ua, &auth).unwrap(), b"{\"hello\":1}");
}

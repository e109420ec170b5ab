// teemate_sealcrypto.node: the primitives of the owner's sealed path, straight on OpenSSL
// (trusted side).
//
// The owner's sealed activations (enclave-runtime/trusted/sealed.js over hpke.js) need, per
// activation, one X25519 agreement, a few HMAC-SHA256, AES-256-GCM one way and the other, two
// SHA-256 and an Ed25519 signature. Through node:crypto each of those is a JS object graph
// (KeyObjects, Hmac and Cipheriv streams) that runs cold on the owner's main thread between
// isolate preparations, at several times its warm cost; here each is one call into the OpenSSL
// that Node itself links (its symbols resolve against the node executable, as the isolate
// addon's do). The algorithms are fetched once; a private key is imported once into a handle
// (an external that frees the EVP_PKEY with it), so the per-call work is the primitive itself.
//
// hpke.js picks this module when it loads and falls back to node:crypto otherwise (the same
// interface; enclave-runtime/test/sealcrypto.test.js runs both on the same vectors). Intermediate
// secrets on the C++ side are cleansed before return; what crosses back to JS is what the JS
// implementation would hold as well.
//
// Interface (every Buffer argument may be any Uint8Array; sizes are checked, a wrong one throws a
// TypeError):
//   x25519Private(raw32) -> handle                      X25519 private key
//   ed25519Private(raw32) -> handle                     Ed25519 private key
//   x25519(handle, peerRaw32) -> Buffer(32)             the shared secret; throws with code
//                                                       'ERR_TEEMATE_X25519' for a small-order
//                                                       or otherwise unusable peer key
//   hmacSha256(key, data) -> Buffer(32)
//   sha256(data) -> Buffer(32)
//   gcmSeal(key32, iv12, aad, plaintext) -> Buffer      ciphertext || 16-byte tag
//   gcmOpen(key32, iv12, aad, ciphertextAndTag) -> Buffer; throws with code 'ERR_TEEMATE_GCM'
//                                                       when the tag does not verify
//   ed25519Sign(handle, message) -> Buffer(64)
//   hpkeOpen(handle, pkRaw32, enc32, context, aad, ct) -> Buffer
//                                                       RFC 9180 base mode, single shot, suite
//                                                       DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//                                                       AES-256-GCM: the agreement, the key
//                                                       schedule and the AEAD in one call.
//                                                       context is mode_base's key schedule
//                                                       context (0x00 || psk_id_hash ||
//                                                       info_hash, which depends on info only:
//                                                       hpke.js computes it once per info).
//                                                       Throws ERR_TEEMATE_X25519 or
//                                                       ERR_TEEMATE_GCM as x25519 and gcmOpen do
//
// Plain Node-API (no V8 headers), like teemate_lockdown.node.
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr size_t kKey = 32;
constexpr size_t kIv = 12;
constexpr size_t kTag = 16;
constexpr size_t kHash = 32;
constexpr size_t kBlock = 64;  // SHA-256's block, HMAC's pad

// The algorithms, fetched once: an implicit fetch (EVP_sha256() and the like handed to an
// init) searches the provider store on every call.
EVP_MD* sha256_md = nullptr;
EVP_CIPHER* gcm_cipher = nullptr;
std::once_flag fetched;
bool fetch_ok = false;

void Fetch() {
  sha256_md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  gcm_cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  fetch_ok = sha256_md != nullptr && gcm_cipher != nullptr;
}

napi_value ThrowCode(napi_env env, const char* code, const std::string& msg) {
  napi_throw_error(env, code, msg.c_str());
  return nullptr;
}

napi_value ThrowType(napi_env env, const std::string& msg) {
  napi_throw_type_error(env, nullptr, msg.c_str());
  return nullptr;
}

// Bytes is a view of a Uint8Array (Buffer) argument.
struct Bytes {
  const unsigned char* p = nullptr;
  size_t n = 0;
};

bool GetBytes(napi_env env, napi_value v, Bytes* out) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  size_t length;
  void* data;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset) != napi_ok) return false;
  if (type != napi_uint8_array) return false;
  out->p = static_cast<const unsigned char*>(data);
  out->n = length;
  return true;
}

// Args reads n Uint8Array arguments, with an exact size where size[i] != 0, after `skip`
// leading arguments left to the caller (handles).
bool Args(napi_env env, napi_callback_info info, size_t skip, size_t n, const size_t* sizes, const char* fn,
          napi_value* argv, Bytes* out) {
  size_t argc = skip + n;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < skip + n) {
    ThrowType(env, std::string(fn) + ": expected " + std::to_string(skip + n) + " arguments");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    if (!GetBytes(env, argv[skip + i], &out[i])) {
      ThrowType(env, std::string(fn) + ": argument " + std::to_string(skip + i + 1) + " is not a Uint8Array");
      return false;
    }
    if (sizes[i] != 0 && out[i].n != sizes[i]) {
      ThrowType(env, std::string(fn) + ": argument " + std::to_string(skip + i + 1) + " is not " +
                         std::to_string(sizes[i]) + " bytes");
      return false;
    }
  }
  return true;
}

napi_value NewBuffer(napi_env env, const unsigned char* p, size_t n) {
  napi_value out;
  void* data;
  if (napi_create_buffer_copy(env, n, p, &data, &out) != napi_ok) return nullptr;
  return out;
}

// ---- keys ----------------------------------------------------------------------------------
void FreeKey(napi_env, void* data, void*) { EVP_PKEY_free(static_cast<EVP_PKEY*>(data)); }

// A handle is an external whose type tag says which kind of key it holds, so that an
// Ed25519 handle cannot be passed for X25519 (or any other external for either).
const napi_type_tag kX25519Tag = {0x7465656d61746558ULL, 0x3235353139000001ULL};
const napi_type_tag kEd25519Tag = {0x7465656d61746545ULL, 0x6432353531390002ULL};

napi_value PrivateKey(napi_env env, napi_callback_info info, int type, const napi_type_tag* tag, const char* fn) {
  napi_value argv[1];
  Bytes raw;
  const size_t sizes[] = {kKey};
  if (!Args(env, info, 0, 1, sizes, fn, argv, &raw)) return nullptr;
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(type, nullptr, raw.p, raw.n);
  if (key == nullptr) return ThrowCode(env, "ERR_TEEMATE_KEY", std::string(fn) + ": OpenSSL refused the key");
  napi_value out;
  if (napi_create_external(env, key, FreeKey, nullptr, &out) != napi_ok) {
    EVP_PKEY_free(key);
    return nullptr;
  }
  napi_type_tag_object(env, out, tag);
  return out;
}

napi_value X25519Private(napi_env env, napi_callback_info info) {
  return PrivateKey(env, info, EVP_PKEY_X25519, &kX25519Tag, "x25519Private");
}

napi_value Ed25519Private(napi_env env, napi_callback_info info) {
  return PrivateKey(env, info, EVP_PKEY_ED25519, &kEd25519Tag, "ed25519Private");
}

EVP_PKEY* GetKey(napi_env env, napi_value v, const napi_type_tag* tag, const char* fn) {
  bool ok = false;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, tag, &ok) != napi_ok || !ok) {
    ThrowType(env, std::string(fn) + ": argument 1 is not a key handle of this kind");
    return nullptr;
  }
  void* data;
  if (napi_get_value_external(env, v, &data) != napi_ok) return nullptr;
  return static_cast<EVP_PKEY*>(data);
}

// ---- X25519 ----------------------------------------------------------------------------------
// Agree is X25519 of own with the raw peer key into z (32 bytes); on failure z is cleansed and
// the reason returned ("" on success).
const char* Agree(EVP_PKEY* own, Bytes peer, unsigned char* z) {
  EVP_PKEY* pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer.p, peer.n);
  if (pub == nullptr) return "the peer key is not an X25519 key";
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(own, nullptr);
  size_t zn = kKey;
  // OpenSSL refuses an all-zero shared secret (a small-order peer key) in derive.
  bool ok = ctx != nullptr && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, pub) == 1 &&
            EVP_PKEY_derive(ctx, z, &zn) == 1 && zn == kKey;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pub);
  if (ok) return "";
  OPENSSL_cleanse(z, kKey);
  return "the agreement failed (a small-order peer key)";
}

napi_value X25519(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Bytes peer;
  const size_t sizes[] = {kKey};
  if (!Args(env, info, 1, 1, sizes, "x25519", argv, &peer)) return nullptr;
  EVP_PKEY* own = GetKey(env, argv[0], &kX25519Tag, "x25519");
  if (own == nullptr) return nullptr;
  unsigned char z[kKey];
  const char* why = Agree(own, peer, z);
  if (*why != 0) return ThrowCode(env, "ERR_TEEMATE_X25519", std::string("x25519: ") + why);
  napi_value out = NewBuffer(env, z, kKey);
  OPENSSL_cleanse(z, sizeof z);
  return out;
}

// ---- SHA-256 and HMAC-SHA256 -----------------------------------------------------------------------
// Digest hashes the parts in order into out (32 bytes).
bool Digest(const Bytes* parts, size_t n, unsigned char* out) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestInit_ex2(ctx, sha256_md, nullptr) == 1;
  for (size_t i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(ctx, parts[i].p, parts[i].n) == 1;
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == kHash;
  EVP_MD_CTX_free(ctx);
  return ok;
}

napi_value Sha256(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  Bytes data;
  const size_t sizes[] = {0};
  if (!Args(env, info, 0, 1, sizes, "sha256", argv, &data)) return nullptr;
  unsigned char h[kHash];
  if (!Digest(&data, 1, h)) return ThrowCode(env, "ERR_TEEMATE_CRYPTO", "sha256 failed");
  return NewBuffer(env, h, kHash);
}

// Hmac is HMAC-SHA256 (RFC 2104) over the fetched SHA-256 of the parts in order, into mac (32
// bytes): H((K ^ opad) || H((K ^ ipad) || m)), a key longer than the block hashed first.
bool Hmac(Bytes key, const Bytes* parts, size_t n, unsigned char* mac) {
  unsigned char k[kBlock] = {0};
  bool ok = true;
  if (key.n > kBlock) {
    ok = Digest(&key, 1, k);
  } else if (key.n > 0) {
    memcpy(k, key.p, key.n);
  }
  unsigned char pad[kBlock];
  unsigned char inner[kHash];
  for (size_t i = 0; i < kBlock; i++) pad[i] = k[i] ^ 0x36;
  Bytes in[8];
  in[0] = {pad, kBlock};
  for (size_t i = 0; i < n && i < 7; i++) in[i + 1] = parts[i];
  ok = ok && n < 8 && Digest(in, n + 1, inner);
  for (size_t i = 0; i < kBlock; i++) pad[i] = k[i] ^ 0x5c;
  Bytes outer[2] = {{pad, kBlock}, {inner, kHash}};
  ok = ok && Digest(outer, 2, mac);
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(pad, sizeof pad);
  OPENSSL_cleanse(inner, sizeof inner);
  return ok;
}

napi_value HmacSha256(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Bytes a[2];
  const size_t sizes[] = {0, 0};
  if (!Args(env, info, 0, 2, sizes, "hmacSha256", argv, a)) return nullptr;
  unsigned char mac[kHash];
  const bool ok = Hmac(a[0], &a[1], 1, mac);
  napi_value out = ok ? NewBuffer(env, mac, kHash) : ThrowCode(env, "ERR_TEEMATE_CRYPTO", "hmacSha256 failed");
  OPENSSL_cleanse(mac, sizeof mac);
  return out;
}

// ---- AES-256-GCM ---------------------------------------------------------------------------------
napi_value GcmSeal(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Bytes a[4];
  const size_t sizes[] = {kKey, kIv, 0, 0};
  if (!Args(env, info, 0, 4, sizes, "gcmSeal", argv, a)) return nullptr;
  if (a[3].n > static_cast<size_t>(INT32_MAX) - kTag || a[2].n > static_cast<size_t>(INT32_MAX)) {
    return ThrowType(env, "gcmSeal: the plaintext or AAD is too large");
  }
  std::vector<unsigned char> out(a[3].n + kTag);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  bool ok = ctx != nullptr && EVP_EncryptInit_ex2(ctx, gcm_cipher, a[0].p, a[1].p, nullptr) == 1 &&
            (a[2].n == 0 || EVP_EncryptUpdate(ctx, nullptr, &len, a[2].p, static_cast<int>(a[2].n)) == 1) &&
            EVP_EncryptUpdate(ctx, out.data(), &len, a[3].p, static_cast<int>(a[3].n)) == 1;
  int fin = 0;
  ok = ok && EVP_EncryptFinal_ex(ctx, out.data() + len, &fin) == 1 &&
       static_cast<size_t>(len + fin) == a[3].n &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTag, out.data() + a[3].n) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return ThrowCode(env, "ERR_TEEMATE_CRYPTO", "gcmSeal failed");
  return NewBuffer(env, out.data(), out.size());
}

// Open is AES-256-GCM decryption of ct (ciphertext || tag) into out; false when the tag does not
// verify (out is cleansed then).
bool Open(const unsigned char* key, const unsigned char* iv, Bytes aad, Bytes ct, std::vector<unsigned char>* out) {
  const size_t n = ct.n - kTag;
  out->assign(n == 0 ? 1 : n, 0);
  unsigned char tag[kTag];
  memcpy(tag, ct.p + n, kTag);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  bool ok = ctx != nullptr && EVP_DecryptInit_ex2(ctx, gcm_cipher, key, iv, nullptr) == 1 &&
            (aad.n == 0 || EVP_DecryptUpdate(ctx, nullptr, &len, aad.p, static_cast<int>(aad.n)) == 1) &&
            EVP_DecryptUpdate(ctx, out->data(), &len, ct.p, static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTag, tag) == 1;
  int fin = 0;
  const bool verified = ok && EVP_DecryptFinal_ex(ctx, out->data() + len, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!verified) OPENSSL_cleanse(out->data(), out->size());
  return verified;
}

napi_value GcmOpen(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Bytes a[4];
  const size_t sizes[] = {kKey, kIv, 0, 0};
  if (!Args(env, info, 0, 4, sizes, "gcmOpen", argv, a)) return nullptr;
  if (a[3].n < kTag) return ThrowCode(env, "ERR_TEEMATE_GCM", "gcmOpen: the ciphertext is shorter than its tag");
  if (a[3].n > static_cast<size_t>(INT32_MAX) || a[2].n > static_cast<size_t>(INT32_MAX)) {
    return ThrowType(env, "gcmOpen: the ciphertext or AAD is too large");
  }
  std::vector<unsigned char> out;
  if (!Open(a[0].p, a[1].p, a[2], a[3], &out)) {
    return ThrowCode(env, "ERR_TEEMATE_GCM", "gcmOpen: the ciphertext does not open");
  }
  napi_value result = NewBuffer(env, out.data(), a[3].n - kTag);
  OPENSSL_cleanse(out.data(), out.size());
  return result;
}

// ---- HPKE open ----------------------------------------------------------------------------------
// RFC 9180's labels: "HPKE-v1" || suite id || label, the KEM's suite id "KEM" || 0x0020
// (DHKEM(X25519, HKDF-SHA256)) and HPKE's "HPKE" || KEM 0x0020 || KDF 0x0001 || AEAD 0x0002.
const unsigned char kHpkeV1[] = {'H', 'P', 'K', 'E', '-', 'v', '1'};
const unsigned char kKemSuite[] = {'K', 'E', 'M', 0x00, 0x20};
const unsigned char kHpkeSuite[] = {'H', 'P', 'K', 'E', 0x00, 0x20, 0x00, 0x01, 0x00, 0x02};
const unsigned char kZeroSalt[kHash] = {0};
const unsigned char kOne[] = {0x01};

Bytes Lit(const unsigned char* p, size_t n) { return {p, n}; }
Bytes Str(const char* s) { return {reinterpret_cast<const unsigned char*>(s), strlen(s)}; }

// LabeledExtract: HMAC(salt, "HPKE-v1" || suite || label || ikm).
bool LabeledExtract(Bytes suite, Bytes salt, const char* label, Bytes ikm, unsigned char* out) {
  const Bytes parts[] = {Lit(kHpkeV1, sizeof kHpkeV1), suite, Str(label), ikm};
  return Hmac(salt, parts, 4, out);
}

// LabeledExpand for length <= 32 (one HKDF block): HMAC(prk, I2OSP(length, 2) || "HPKE-v1" ||
// suite || label || info || 0x01).
bool LabeledExpand(Bytes suite, Bytes prk, const char* label, Bytes info1, Bytes info2, size_t length,
                   unsigned char* out) {
  const unsigned char len[] = {static_cast<unsigned char>(length >> 8), static_cast<unsigned char>(length)};
  const Bytes parts[] = {Lit(len, 2), Lit(kHpkeV1, sizeof kHpkeV1), suite, Str(label), info1, info2, Lit(kOne, 1)};
  return Hmac(prk, parts, 7, out);
}

napi_value HpkeOpen(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  Bytes a[5];  // pkR, enc, context, aad, ct
  const size_t sizes[] = {kKey, kKey, 0, 0, 0};
  if (!Args(env, info, 1, 5, sizes, "hpkeOpen", argv, a)) return nullptr;
  EVP_PKEY* own = GetKey(env, argv[0], &kX25519Tag, "hpkeOpen");
  if (own == nullptr) return nullptr;
  const Bytes pk = a[0], enc = a[1], context = a[2], aad = a[3], ct = a[4];
  if (ct.n < kTag) return ThrowCode(env, "ERR_TEEMATE_GCM", "hpkeOpen: the ciphertext is shorter than its tag");
  if (ct.n > static_cast<size_t>(INT32_MAX) || aad.n > static_cast<size_t>(INT32_MAX)) {
    return ThrowType(env, "hpkeOpen: the ciphertext or AAD is too large");
  }
  unsigned char z[kKey];
  const char* why = Agree(own, enc, z);
  if (*why != 0) return ThrowCode(env, "ERR_TEEMATE_X25519", std::string("hpkeOpen: ") + why);
  const Bytes kem = Lit(kKemSuite, sizeof kKemSuite), hpke = Lit(kHpkeSuite, sizeof kHpkeSuite);
  unsigned char prk[kHash], shared[kHash], secret[kHash], key[kHash], nonce[kHash];
  // DHKEM's ExtractAndExpand over kem_context = enc || pkR, then mode_base's key schedule.
  bool ok = LabeledExtract(kem, Lit(kZeroSalt, kHash), "eae_prk", Lit(z, kKey), prk) &&
            LabeledExpand(kem, Lit(prk, kHash), "shared_secret", enc, pk, kHash, shared) &&
            LabeledExtract(hpke, Lit(shared, kHash), "secret", Lit(nullptr, 0), secret) &&
            LabeledExpand(hpke, Lit(secret, kHash), "key", context, Lit(nullptr, 0), kKey, key) &&
            LabeledExpand(hpke, Lit(secret, kHash), "base_nonce", context, Lit(nullptr, 0), kIv, nonce);
  std::vector<unsigned char> out;
  const bool opened = ok && Open(key, nonce, aad, ct, &out);
  for (unsigned char* p : {z, prk, shared, secret, key, nonce}) OPENSSL_cleanse(p, kHash);
  if (!ok) return ThrowCode(env, "ERR_TEEMATE_CRYPTO", "hpkeOpen: the key schedule failed");
  if (!opened) return ThrowCode(env, "ERR_TEEMATE_GCM", "hpkeOpen: the ciphertext does not open");
  napi_value result = NewBuffer(env, out.data(), ct.n - kTag);
  OPENSSL_cleanse(out.data(), out.size());
  return result;
}

// ---- Ed25519 ---------------------------------------------------------------------------------------
napi_value Ed25519Sign(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Bytes msg;
  const size_t sizes[] = {0};
  if (!Args(env, info, 1, 1, sizes, "ed25519Sign", argv, &msg)) return nullptr;
  EVP_PKEY* key = GetKey(env, argv[0], &kEd25519Tag, "ed25519Sign");
  if (key == nullptr) return nullptr;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  size_t n = sizeof sig;
  bool ok = ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
            EVP_DigestSign(ctx, sig, &n, msg.p, msg.n) == 1 && n == sizeof sig;
  EVP_MD_CTX_free(ctx);
  if (!ok) return ThrowCode(env, "ERR_TEEMATE_CRYPTO", "ed25519Sign failed");
  return NewBuffer(env, sig, sizeof sig);
}

napi_value Init(napi_env env, napi_value exports) {
  std::call_once(fetched, Fetch);
  if (!fetch_ok) {
    napi_throw_error(env, nullptr, "teemate_sealcrypto: OpenSSL has no SHA2-256 or AES-256-GCM");
    return nullptr;
  }
  napi_property_descriptor props[] = {
      {"x25519Private", nullptr, X25519Private, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"ed25519Private", nullptr, Ed25519Private, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"x25519", nullptr, X25519, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"hmacSha256", nullptr, HmacSha256, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sha256", nullptr, Sha256, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gcmSeal", nullptr, GcmSeal, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gcmOpen", nullptr, GcmOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"ed25519Sign", nullptr, Ed25519Sign, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"hpkeOpen", nullptr, HpkeOpen, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

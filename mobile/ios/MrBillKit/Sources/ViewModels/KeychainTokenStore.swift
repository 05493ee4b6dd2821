import Foundation
import Security

/// The session, kept between launches in the iOS Keychain (this device only, readable after
/// the first unlock so background refreshes work; not synced to iCloud, not in backups that
/// restore to another device). The core hands its tokens to this store and to nothing else.
public final class KeychainTokenStore: TokenStore {
    private let service: String

    public init(service: String = "dev.mrbill.session") {
        self.service = service
    }

    public func load() -> StoredSession? {
        var query = base()
        query[kSecReturnData as String] = true
        query[kSecMatchLimit as String] = kSecMatchLimitOne
        var found: AnyObject?
        guard SecItemCopyMatching(query as CFDictionary, &found) == errSecSuccess,
              let data = found as? Data,
              let lines = String(data: data, encoding: .utf8)?.components(separatedBy: "\n"),
              lines.count == 5,
              let expires = Int64(lines[3])
        else { return nil }
        return StoredSession(tenant: lines[0], endpoint: lines[1], accessToken: lines[2], accessExpiresAtMs: expires, refreshToken: lines[4])
    }

    public func save(session: StoredSession) {
        let lines = [session.tenant, session.endpoint, session.accessToken, String(session.accessExpiresAtMs), session.refreshToken]
        let data = Data(lines.joined(separator: "\n").utf8)
        let update: [String: Any] = [kSecValueData as String: data]
        if SecItemUpdate(base() as CFDictionary, update as CFDictionary) == errSecItemNotFound {
            var add = base()
            add[kSecValueData as String] = data
            add[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
            SecItemAdd(add as CFDictionary, nil)
        }
    }

    public func clear() {
        SecItemDelete(base() as CFDictionary)
    }

    private func base() -> [String: Any] {
        [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: service,
            kSecAttrAccount as String: "session",
        ]
    }
}

import Foundation

/// What went wrong, as a screen shows it: one case per thing the user can do about it. The
/// Swift twin of the Android app's `Problem` (mobile/android/viewmodels): same cases, same
/// mapping from the core's errors, which the JVM tests check against the real platform.
public enum Problem: Equatable {
    /// The server cannot be reached (no network, the server restarting): "try again".
    case offline(reason: String)
    case noSuchCompany
    case suspended
    case signedOut
    case wrongPassword
    /// Refused input: a message per form field (`tags[2]` → `tags`).
    case invalid(fields: [String: String])
    case notFound
    case refused(code: String, detail: String)
    case tooManyAttempts(retryAfterSecs: UInt64)
    case serverTrouble(code: String)

    public init(_ error: Error) {
        guard let core = error as? CoreError else {
            self = .offline(reason: error.localizedDescription)
            return
        }
        switch core {
        case let .Network(reason): self = .offline(reason: reason)
        case .CompanyNotFound: self = .noSuchCompany
        case .NoCompany, .SignedOut: self = .signedOut
        case .InvalidCredentials: self = .wrongPassword
        case let .Validation(fields): self = .invalid(fields: fieldMessages(fields.map { ($0.field, $0.message) }))
        case .NotFound: self = .notFound
        case let .Refused(code, detail): self = .refused(code: code, detail: detail)
        case .TenantSuspended: self = .suspended
        case let .RateLimited(retryAfterSecs): self = .tooManyAttempts(retryAfterSecs: retryAfterSecs)
        case let .Server(_, code, _): self = .serverTrouble(code: code)
        }
    }

    /// The field messages, when the problem is refused input.
    public var fieldErrors: [String: String] {
        if case let .invalid(fields) = self { return fields }
        return [:]
    }

    var retriable: Bool {
        switch self {
        case .offline, .serverTrouble: return true
        default: return false
        }
    }
}

/// Field messages keyed by the form field: the first segment of the API's JSON path.
func fieldMessages(_ fields: [(String, String)]) -> [String: String] {
    var out: [String: String] = [:]
    for (path, message) in fields {
        let key = String(path.split(whereSeparator: { $0 == "[" || $0 == "." }).first ?? Substring(path))
        if let known = out[key], !known.contains(message) {
            out[key] = known + "; " + message
        } else if out[key] == nil {
            out[key] = message
        }
    }
    return out
}

/// Runs `call`, retrying when the server cannot be reached or fails, with backoff (for reads).
func withRetry<T>(attempts: Int = 4, firstDelayMs: UInt64 = 500, _ call: () async throws -> T) async throws -> T {
    var wait = firstDelayMs
    for _ in 1..<attempts {
        do {
            return try await call()
        } catch {
            guard Problem(error).retriable else { throw error }
            try await Task.sleep(nanoseconds: wait * 1_000_000)
            wait *= 2
        }
    }
    return try await call()
}

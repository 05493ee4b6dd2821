import MrBillKit
import SwiftUI

@main
struct MrBillApp: App {
    @StateObject private var app: AppModel

    init() {
        let router = Bundle.main.object(forInfoDictionaryKey: "MrBillRouterURL") as? String ?? "https://api.mrbill.dev"
        // The URL is ours (Info.plist): a malformed one is a build mistake, found on first launch.
        let core = try! MrBill(routerUrl: router, store: KeychainTokenStore())
        let model = AppModel(core: core)
        model.start()
        _app = StateObject(wrappedValue: model)
    }

    var body: some Scene {
        WindowGroup {
            RootView(app: app)
        }
    }
}

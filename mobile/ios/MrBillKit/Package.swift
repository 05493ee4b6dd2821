// swift-tools-version:5.9
// MrBillKit: the shared Rust core for iOS — its generated Swift bindings (Sources/Generated,
// `./x bindings`) and the view models (Sources/ViewModels) the SwiftUI app binds to. The core's
// static library comes as an XCFramework built by ../build-xcframework.sh on a Mac.
import PackageDescription

let package = Package(
    name: "MrBillKit",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "MrBillKit", targets: ["MrBillKit"]),
    ],
    targets: [
        // libmrbill_core.a per platform slice, with the C headers and module maps of the
        // MrBillCoreFFI and MrBillWireFFI modules the bindings import.
        .binaryTarget(name: "MrBillCoreFFI", path: "MrBillCoreFFI.xcframework"),
        .target(
            name: "MrBillKit",
            dependencies: ["MrBillCoreFFI"],
            path: "Sources",
            exclude: [
                "Generated/MrBillCoreFFI.h",
                "Generated/MrBillCoreFFI.modulemap",
                "Generated/MrBillWireFFI.h",
                "Generated/MrBillWireFFI.modulemap",
            ]
        ),
    ]
)

// Mr. Bill for Android: open this directory in Android Studio.
//   :core        the core's generated Kotlin bindings (UniFFI, over JNA) — `./x bindings`
//   :viewmodels  every screen's state and behaviour, plain Kotlin (no Android imports)
//   :app         the Compose UI, the Keystore-backed token store, the WebRTC call engine
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "MrBill"
include(":core", ":viewmodels", ":app")

// Every screen's state (StateFlows) and behaviour (intents), in plain Kotlin: no Android
// imports, so the JVM runs it against the real core. `./x test` compiles and runs these tests
// with kotlinc + JUnit against a real local platform (tests/e2e/tests/mobile.rs); under Gradle
// they need the same system properties (mrbill.router, mrbill.tenant, …) and the core's
// library on jna.library.path.
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    api(project(":core"))
    api(libs.kotlinx.coroutines.core)
    compileOnly(libs.jna)
    testImplementation(libs.jna)
    testImplementation(libs.junit)
}

tasks.test {
    systemProperties(System.getProperties().filterKeys { it.toString().startsWith("mrbill.") }.mapKeys { it.key.toString() })
    // Where `cargo build -p mrbill-core` put libmrbill_core (CARGO_TARGET_DIR, else the workspace's).
    val libDir = System.getenv("MRBILL_CORE_LIB_DIR") ?: rootDir.resolve("../../target/debug").absolutePath
    systemProperty("jna.library.path", libDir)
}

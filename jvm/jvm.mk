# Real JVM services for the tests (Kafka broker, Beam's Flink job server).
# Maven resolves each pom's runtime jars from Maven Central into
# $(JVM_CACHE)/<name>/ once; the stamp makes later runs a no-op until the pom
# changes. tests/jvm_services.py reads the same directory: env JVM_CACHE,
# default .cache/jvm under the repo root (relative paths are taken from there).
# Maven's own download cache is the default ~/.m2.
JVM_CACHE ?= .cache/jvm
MVN ?= mvn
MVN_FLAGS ?= -q -B -Dstyle.color=never

.PHONY: jvm-jars jvm-clean

jvm-jars: $(JVM_CACHE)/kafka.stamp $(JVM_CACHE)/flink.stamp

# The directory is rebuilt from scratch so jars of an older pom never linger
# on the classpath ('<dir>/*').
$(JVM_CACHE)/%.stamp: jvm/%/pom.xml
	rm -rf $(JVM_CACHE)/$* $@
	$(MVN) $(MVN_FLAGS) -f $< dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(abspath $(JVM_CACHE)/$*)
	touch $@

jvm-clean:
	rm -rf $(JVM_CACHE)

# Real JVM services for the tests (Kafka broker, Beam's Flink job server).
# Maven resolves each pom's runtime jars from Maven Central into
# $(JVM_CACHE)/<name>/ once; the stamp makes later runs a no-op until the pom
# changes. tests/jvm_services.py reads the same directory: env JVM_CACHE,
# default .cache/jvm under the repo root (relative paths are taken from there).
# Maven's own download cache is the default ~/.m2.
JVM_CACHE ?= .cache/jvm
MVN ?= mvn
MVN_FLAGS ?= -q -B -Dstyle.color=never
FLINK_JOB_SERVER_JAR := $(JVM_CACHE)/flink-job-server.jar

# Flink's launch scripts open these JDK packages on Java 17 for its
# reflection-based serializers.
FLINK_ADD_OPENS := java.lang java.lang.reflect java.io java.net java.nio \
	java.text java.time java.util java.util.concurrent \
	java.util.concurrent.atomic java.util.concurrent.locks sun.nio.ch

.PHONY: jvm-jars jvm-clean flink-cluster

# A Flink 1.19 session cluster from the jars above (one JobManager, two TaskManagers, each its own
# JVM; settings in jvm/flink/conf/config.yaml), in the foreground until Ctrl-C. Submit with
# --runner FlinkRunner --flink_master 127.0.0.1:$(FLINK_REST_PORT). The tests start their own
# through the same script, on free ports.
FLINK_REST_PORT ?= 8081
flink-cluster: $(STAMP) $(JVM_CACHE)/flink.stamp $(JVM_CACHE)/flink-prometheus.stamp
	$(PY) -m tests.flink_cluster --rest-port $(FLINK_REST_PORT)

# flink-prometheus: Flink's Prometheus metrics reporter, on the session cluster's classpath only.
jvm-jars: $(JVM_CACHE)/kafka.stamp $(FLINK_JOB_SERVER_JAR) $(JVM_CACHE)/flink-prometheus.stamp

# The directory is rebuilt from scratch so jars of an older pom never linger
# on the classpath ('<dir>/*').
$(JVM_CACHE)/%.stamp: jvm/%/pom.xml
	rm -rf $(JVM_CACHE)/$* $@
	$(MVN) $(MVN_FLAGS) -f $< dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(abspath $(JVM_CACHE)/$*)
	touch $@

# A runnable job-server jar for `--runner FlinkRunner --flink_job_server_jar`
# and for the test fixture. Maven Central serves no Beam job-server jar for
# this Beam version, so this jar is only a manifest: Main-Class, the JDK
# opens, and a Class-Path naming the jars in flink/ beside it. Manifest lines
# are capped at 72 bytes, hence fold plus continuation spaces.
$(FLINK_JOB_SERVER_JAR): $(JVM_CACHE)/flink.stamp
	( echo 'Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver'; \
	  echo 'Add-Opens: $(addprefix java.base/,$(FLINK_ADD_OPENS))' | fold -b -w 70 | sed '2,$$s/^/ /'; \
	  cd $(JVM_CACHE) && printf 'Class-Path:%s\n' "$$(printf ' %s' flink/*.jar)" \
	    | fold -b -w 70 | sed '2,$$s/^/ /' \
	) > $@.mf
	jar --create --file $@ --manifest $@.mf
	rm $@.mf

jvm-clean:
	rm -rf $(JVM_CACHE)
